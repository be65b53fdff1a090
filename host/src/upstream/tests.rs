//! The client against a scripted HTTP/1.1 upstream on loopback, which
//! reports every connection it accepts, every request head it reads and
//! when a client closes a connection.

use super::*;
use crate::routing::{ChannelTable, Secret};
use crate::store::channels::ChannelSpec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};

/// What the scripted upstream does after reading a request.
#[derive(Clone, Copy)]
enum Script {
    /// Answers and waits for the next request on the connection.
    Answer,
    /// Answers, then closes the connection when told to, without having
    /// announced it.
    AnswerThenClose,
    /// Answers with `Connection: close`, then waits for the client to
    /// close its side.
    AnswerAndClose,
    /// Sends the head and one chunk of a stream that never ends.
    StartStream,
    /// Closes every connection as soon as it is accepted.
    Refuse,
}

#[derive(Debug, PartialEq)]
enum Event {
    Accepted,
    Head(String),
    /// The upstream closed the connection.
    Closed,
    /// The client closed the connection.
    ClientLeft,
}

/// A scripted upstream on loopback.
struct Scripted {
    base_url: String,
    /// A channel to it without a credential.
    channel: Arc<Channel>,
    /// What it saw.
    seen: mpsc::UnboundedReceiver<Event>,
    /// The trigger of [`Script::AnswerThenClose`].
    close: Arc<Notify>,
}

async fn upstream(script: Script) -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}/v1/", listener.local_addr().unwrap());
    let (events, seen) = mpsc::unbounded_channel();
    let close = Arc::new(Notify::new());
    let trigger = close.clone();
    tokio::spawn(async move {
        let mut answered = 0;
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            events.send(Event::Accepted).unwrap();
            let events = events.clone();
            answered += 1;
            tokio::spawn(serve(socket, script, answered, events, trigger.clone()));
        }
    });
    Scripted {
        channel: channel(&base_url, None),
        base_url,
        seen,
        close,
    }
}

async fn serve(
    mut socket: TcpStream,
    script: Script,
    mut answered: usize,
    events: mpsc::UnboundedSender<Event>,
    close: Arc<Notify>,
) {
    if let Script::Refuse = script {
        drop(socket);
        events.send(Event::Closed).unwrap();
        return;
    }
    loop {
        let Some(head) = read_request(&mut socket).await else {
            events.send(Event::ClientLeft).unwrap();
            return;
        };
        events.send(Event::Head(head)).unwrap();
        match script {
            Script::Answer | Script::AnswerThenClose => {
                let body = format!("answer {answered}");
                answered += 100;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                socket.write_all(response.as_bytes()).await.unwrap();
                if let Script::AnswerThenClose = script {
                    close.notified().await;
                    socket.shutdown().await.unwrap();
                    drop(socket);
                    events.send(Event::Closed).unwrap();
                    return;
                }
            }
            Script::AnswerAndClose => {
                let response =
                    "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 6\r\n\r\nclosed";
                socket.write_all(response.as_bytes()).await.unwrap();
                let mut rest = [0u8; 64];
                while socket.read(&mut rest).await.unwrap_or(0) > 0 {}
                events.send(Event::ClientLeft).unwrap();
                return;
            }
            Script::Refuse => unreachable!("refused on accepting"),
            Script::StartStream => {
                let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
                socket.write_all(head.as_bytes()).await.unwrap();
                socket.write_all(b"6\r\ndata: \r\n").await.unwrap();
                let mut rest = [0u8; 64];
                // The client's next move is to leave.
                while socket.read(&mut rest).await.unwrap_or(0) > 0 {}
                events.send(Event::ClientLeft).unwrap();
                return;
            }
        }
    }
}

/// The request's head, its body read past; `None` when the client closed.
async fn read_request(socket: &mut TcpStream) -> Option<String> {
    let mut read = Vec::new();
    let mut byte = [0u8; 1];
    while !read.ends_with(b"\r\n\r\n") {
        if socket.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        read.push(byte[0]);
    }
    let head = String::from_utf8(read).unwrap();
    let length: usize = head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|n| n.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    socket.read_exact(&mut body).await.ok()?;
    Some(head)
}

fn channel(base_url: &str, api_key: Option<&str>) -> Arc<Channel> {
    let spec = ChannelSpec {
        name: "scripted".into(),
        protocol: "openai".into(),
        base_url: base_url.into(),
        api_key: api_key.map(|key| Secret::new(key.into())),
        api_key_env: None,
        status: "active".into(),
        models: vec!["m".into()],
        model_map: Default::default(),
        weight: 1,
        priority: 0,
        tags: vec![],
    };
    ChannelTable::new(&[spec])
        .unwrap()
        .candidates("m")
        .remove(0)
}

fn request(credential: CredentialPlacement) -> UpstreamRequest {
    UpstreamRequest {
        path: "/chat/completions".into(),
        headers: vec![("x-extra".into(), "1".into())],
        credential,
        body: b"{}".to_vec(),
    }
}

fn client() -> UpstreamClient {
    UpstreamClient::new(UpstreamConfig::default())
}

async fn answer(client: &UpstreamClient, channel: &Channel) -> Result<String, UpstreamError> {
    let response = client
        .send(
            channel,
            request(CredentialPlacement::Bearer),
            false,
            "req-1",
        )
        .await?;
    let body = response.into_body().read_all(1 << 20).await?;
    Ok(String::from_utf8(body.to_vec()).unwrap())
}

/// The next event, failing the test rather than waiting for ever.
async fn next_event(seen: &mut mpsc::UnboundedReceiver<Event>) -> Option<Event> {
    tokio::time::timeout(Duration::from_secs(10), seen.recv())
        .await
        .expect("no event within 10 s")
}

async fn next_head(seen: &mut mpsc::UnboundedReceiver<Event>) -> String {
    loop {
        match next_event(seen).await.unwrap() {
            Event::Head(head) => return head,
            Event::Accepted => {}
            other => panic!("expected a request, saw {other:?}"),
        }
    }
}

#[tokio::test]
async fn sends_an_origin_form_request_with_host_and_credential() {
    let Scripted {
        base_url, mut seen, ..
    } = upstream(Script::Answer).await;
    let channel = channel(&base_url, Some("sk-secret"));
    assert_eq!(answer(&client(), &channel).await.unwrap(), "answer 1");
    let head = next_head(&mut seen).await.to_ascii_lowercase();
    let authority = base_url
        .trim_start_matches("http://")
        .trim_end_matches("/v1/");
    assert!(
        head.starts_with("post /v1/chat/completions http/1.1\r\n"),
        "{head}"
    );
    for line in [
        format!("host: {authority}"),
        "authorization: bearer sk-secret".into(),
        "content-type: application/json".into(),
        "accept: application/json".into(),
        "x-request-id: req-1".into(),
        "x-extra: 1".into(),
        "content-length: 2".into(),
    ] {
        assert!(
            head.contains(&format!("{line}\r\n")),
            "{line} missing from {head}"
        );
    }
}

#[tokio::test]
async fn puts_a_query_credential_percent_encoded_into_the_target() {
    let Scripted {
        base_url, mut seen, ..
    } = upstream(Script::Answer).await;
    let channel = channel(&base_url, Some("a b/c+d~"));
    let client = client();
    let placement = CredentialPlacement::Query("key".into());
    let response = client
        .send(&channel, request(placement), true, "r")
        .await
        .unwrap();
    response.into_body().read_all(1 << 20).await.unwrap();
    let head = next_head(&mut seen).await;
    assert!(
        head.starts_with("POST /v1/chat/completions?key=a%20b%2Fc%2Bd~ HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        !head.to_ascii_lowercase().contains("authorization"),
        "{head}"
    );
    assert!(head.contains("accept: text/event-stream\r\n"), "{head}");
}

#[tokio::test]
async fn reuses_a_connection_once_its_answer_is_read() {
    let Scripted {
        channel, mut seen, ..
    } = upstream(Script::Answer).await;
    let client = client();
    for i in 0..5 {
        assert_eq!(
            answer(&client, &channel).await.unwrap(),
            format!("answer {}", 1 + 100 * i)
        );
    }
    drop(client);
    let mut events = Vec::new();
    while let Some(event) = next_event(&mut seen).await {
        let left = event == Event::ClientLeft;
        events.push(event);
        if left {
            break;
        }
    }
    assert_eq!(
        events.iter().filter(|e| **e == Event::Accepted).count(),
        1,
        "{events:?}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::Head(_)))
            .count(),
        5,
        "{events:?}"
    );
}

#[tokio::test]
async fn a_connection_the_upstream_closed_while_idle_is_not_reused() {
    let Scripted {
        channel,
        mut seen,
        close,
        ..
    } = upstream(Script::AnswerThenClose).await;
    let client = client();
    for i in 1..=5 {
        assert_eq!(
            answer(&client, &channel).await.unwrap(),
            format!("answer {i}")
        );
        assert_eq!(seen.recv().await, Some(Event::Accepted));
        assert!(matches!(seen.recv().await, Some(Event::Head(_))));
        // Only now, with the connection back in the pool.
        close.notify_one();
        assert_eq!(seen.recv().await, Some(Event::Closed));
    }
}

#[tokio::test]
async fn an_answer_that_announces_a_close_gives_its_connection_up_at_once() {
    let Scripted {
        channel, mut seen, ..
    } = upstream(Script::AnswerAndClose).await;
    let client = client();
    for _ in 0..3 {
        assert_eq!(answer(&client, &channel).await.unwrap(), "closed");
        assert_eq!(next_event(&mut seen).await, Some(Event::Accepted));
        assert!(matches!(next_event(&mut seen).await, Some(Event::Head(_))));
        // While the client, and with it the pool, is still alive: a
        // connection kept for reuse would stay open.
        assert_eq!(next_event(&mut seen).await, Some(Event::ClientLeft));
    }
}

#[tokio::test]
async fn connections_kept_past_their_time_are_closed_whichever_origin_is_called_next() {
    let mut quiet = upstream(Script::Answer).await;
    let busy = upstream(Script::Answer).await;
    let client = UpstreamClient {
        pool: Arc::new(Pool::new(Duration::ZERO)),
        ..client()
    };
    answer(&client, &quiet.channel).await.unwrap();
    answer(&client, &busy.channel).await.unwrap();
    assert_eq!(quiet.seen.recv().await, Some(Event::Accepted));
    assert!(matches!(quiet.seen.recv().await, Some(Event::Head(_))));
    // The client, and with it the pool, is still alive.
    assert_eq!(next_event(&mut quiet.seen).await, Some(Event::ClientLeft));
    drop(client);
}

#[tokio::test]
async fn dropping_an_unfinished_body_closes_its_connection() {
    let Scripted {
        channel, mut seen, ..
    } = upstream(Script::StartStream).await;
    let client = client();
    let response = client
        .send(&channel, request(CredentialPlacement::Bearer), true, "r")
        .await
        .unwrap();
    let mut body = response.into_body();
    assert_eq!(body.next().await.unwrap().unwrap(), "data: ");
    drop(body);
    next_head(&mut seen).await;
    assert_eq!(next_event(&mut seen).await, Some(Event::ClientLeft));
}

#[tokio::test]
async fn a_connection_closed_at_once_fails_the_request_without_waiting() {
    let Scripted {
        channel, mut seen, ..
    } = upstream(Script::Refuse).await;
    let client = client();
    for _ in 0..20 {
        let sent = tokio::time::timeout(Duration::from_secs(10), answer(&client, &channel)).await;
        let error = sent
            .expect("the request waited for the first-byte timeout")
            .unwrap_err();
        assert!(matches!(error, UpstreamError::Broken(_)), "{error:?}");
        assert_eq!(next_event(&mut seen).await, Some(Event::Accepted));
        assert_eq!(next_event(&mut seen).await, Some(Event::Closed));
    }
}

#[tokio::test]
async fn a_request_a_closed_connection_never_began_to_send_comes_back() {
    let Scripted {
        channel, mut seen, ..
    } = upstream(Script::Refuse).await;
    let client = client();
    let mut link = client.connect(&channel.endpoint).await.unwrap();
    assert_eq!(next_event(&mut seen).await, Some(Event::Accepted));
    assert_eq!(next_event(&mut seen).await, Some(Event::Closed));
    // Resumes after the runtime's I/O driver has run: the close has
    // arrived before the connection is first driven with the request.
    tokio::task::yield_now().await;
    let request = build(&channel, request(CredentialPlacement::Bearer), false, "r").unwrap();
    let sent = tokio::time::timeout(Duration::from_secs(10), link.exchange(request)).await;
    let mut failed = sent.expect("the request was left waiting").unwrap_err();
    assert!(failed.take_message().is_some(), "{}", failed.error());
}

#[tokio::test]
async fn an_upstream_that_refuses_connections_is_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let error = answer(&client(), &channel(&base_url, None))
        .await
        .unwrap_err();
    assert!(matches!(error, UpstreamError::Unreachable(_)), "{error:?}");
}

#[test]
fn query_credentials_are_percent_encoded() {
    assert_eq!(percent_encode("a b/c+d~"), "a%20b%2Fc%2Bd~");
}
