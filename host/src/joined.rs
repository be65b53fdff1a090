//! A body's pieces joined into one buffer.

use bytes::{Bytes, BytesMut};

/// Room made when a second piece comes: more usually follow (a stream's
/// events, one per piece), and growing from the exact size would copy them
/// again at every doubling.
const JOINED_ROOM: usize = 4 << 10;

/// Pieces joined in order. The usual small request or answer arrives in
/// one piece, which is kept as it came: a piece hyper hands out shares its
/// read buffer, so turning it into a `BytesMut` would copy it.
#[derive(Default)]
pub struct Joined {
    first: Bytes,
    /// The first piece and every later one, once there is a second.
    all: Option<BytesMut>,
}

impl Joined {
    pub fn len(&self) -> usize {
        self.all.as_ref().map_or(self.first.len(), BytesMut::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn push(&mut self, piece: Bytes) {
        if let Some(all) = &mut self.all {
            all.extend_from_slice(&piece);
        } else if self.first.is_empty() {
            self.first = piece;
        } else if !piece.is_empty() {
            let mut all =
                BytesMut::with_capacity((self.first.len() + piece.len()).max(JOINED_ROOM));
            all.extend_from_slice(&self.first);
            all.extend_from_slice(&piece);
            self.all = Some(all);
        }
    }

    pub fn into_bytes(self) -> Bytes {
        self.all.map_or(self.first, BytesMut::freeze)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_pieces_in_order_and_keeps_a_lone_one_as_it_came() {
        let lone = Bytes::from_static(b"whole");
        let mut joined = Joined::default();
        joined.push(Bytes::new());
        joined.push(lone.clone());
        joined.push(Bytes::new());
        let kept = joined.into_bytes();
        assert_eq!(kept.as_ptr(), lone.as_ptr(), "a lone piece is not copied");

        let mut joined = Joined::default();
        for piece in ["a", "", "bc", "def"] {
            joined.push(Bytes::from(piece));
        }
        assert_eq!(joined.len(), 6);
        assert_eq!(joined.into_bytes(), "abcdef");
        assert!(Joined::default().is_empty());
    }
}
