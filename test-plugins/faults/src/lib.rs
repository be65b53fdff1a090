//! Faults a plugin can commit, for proving that the host contains them.

use std::hint::black_box;

/// Commits the fault `trigger` names; returns for any other word.
pub fn commit(trigger: &str) {
    match trigger {
        "loop" => loop {
            black_box(());
        },
        "allocate" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1; 1 << 20]);
                black_box(&hoard);
            }
        }
        "recurse" => {
            black_box(recurse(black_box(1)));
        }
        "panic" => panic!("asked to panic"),
        _ => {}
    }
}

// Endless on purpose: the stack overflow is the fault under test.
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 64]);
    recurse(depth + 1) + frame[0]
}
