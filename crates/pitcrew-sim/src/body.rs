//! Reply bodies as timed frames: a stream of server-sent events paced like a model writing,
//! or a JSON body, either of which a fault can cut, hold back, garble or break off.

use std::io;
use std::time::Duration;

use axum::body::Body;
use serde_json::Value;

use crate::config::Fault;
use crate::model::Reply;
use crate::text::pieces;
use crate::wire::{self, Meta};

/// One step of writing a body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Frame {
    /// These bytes, flushed as their own chunk.
    Bytes(String),
    /// Nothing is written for this long.
    Pause(Duration),
    /// The connection breaks here: the chunked body never completes.
    Break,
}

/// How a stream is paced.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    /// Between two content chunks.
    pub between_chunks: Duration,
    /// How long a `stall` fault holds its chunk back.
    pub stall: Duration,
    pub chunk_tokens: u32,
}

fn data(value: &Value) -> Frame {
    Frame::Bytes(format!("data: {value}\n\n"))
}

/// The frames of a streamed reply: after the time to first token, the text in chunks
/// `between_chunks` apart, a finish chunk, the usage chunk when `usage` is given, and
/// `[DONE]`. A fault strikes at the middle content chunk (the finish chunk for an empty
/// reply): `disconnect` breaks the connection before it, `truncate` ends the body cleanly
/// before it, `stall` holds it back, `malformed` sends only the first half of its JSON.
pub(crate) fn stream_frames(
    meta: &Meta,
    reply: &Reply,
    usage: Option<Value>,
    pace: Pace,
) -> Vec<Frame> {
    let mut payloads: Vec<Value> = pieces(&reply.text, pace.chunk_tokens)
        .into_iter()
        .enumerate()
        .map(|(i, piece)| wire::content_chunk(meta, piece, i == 0))
        .collect();
    let fault_at = payloads.len() / 2;
    payloads.push(wire::finish_chunk(meta, reply.finish_reason));
    let mut frames = vec![Frame::Pause(reply.latency)];
    for (i, payload) in payloads.iter().enumerate() {
        if i > 0 {
            frames.push(Frame::Pause(pace.between_chunks));
        }
        if i == fault_at {
            match reply.fault {
                Some(Fault::Disconnect) => {
                    frames.push(Frame::Break);
                    return frames;
                }
                Some(Fault::Truncate) => return frames,
                Some(Fault::Stall) => frames.push(Frame::Pause(pace.stall)),
                Some(Fault::Malformed) => {
                    let json = payload.to_string();
                    frames.push(Frame::Bytes(format!("data: {}\n\n", first_half(&json))));
                    continue;
                }
                None => {}
            }
        }
        frames.push(data(payload));
    }
    if let Some(usage) = usage {
        frames.push(data(&wire::usage_chunk(meta, usage)));
    }
    frames.push(Frame::Bytes("data: [DONE]\n\n".into()));
    frames
}

/// The frames of a JSON reply, sent whole after its delay: `disconnect` breaks the
/// connection half way, `truncate` and `malformed` send only the first half of the JSON
/// (`stall` is a longer delay, which the caller adds).
fn json_frames(body: &Value, fault: Option<Fault>) -> Vec<Frame> {
    let text = body.to_string();
    match fault {
        Some(Fault::Disconnect) => vec![Frame::Bytes(first_half(&text).into()), Frame::Break],
        Some(Fault::Truncate | Fault::Malformed) => vec![Frame::Bytes(first_half(&text).into())],
        Some(Fault::Stall) | None => vec![Frame::Bytes(text)],
    }
}

/// The body of a JSON reply: whole, with its length, unless a fault cuts it (see
/// [`json_frames`]).
pub(crate) fn json_body(value: &Value, fault: Option<Fault>) -> Body {
    match fault {
        Some(Fault::Stall) | None => Body::from(value.to_string()),
        Some(_) => body(json_frames(value, fault)),
    }
}

fn first_half(text: &str) -> &str {
    &text[..text.floor_char_boundary(text.len() / 2)]
}

/// A body written frame by frame, each flushed before the next pause, so a client sees the
/// chunks arrive over time.
pub(crate) fn body(frames: Vec<Frame>) -> Body {
    let frames = futures::stream::unfold(frames.into_iter(), |mut frames| async move {
        loop {
            match frames.next()? {
                Frame::Bytes(bytes) => return Some((Ok(bytes), frames)),
                Frame::Pause(pause) => tokio::time::sleep(pause).await,
                Frame::Break => {
                    // Pending once, so hyper flushes what it buffered before the break (an
                    // error found at once would drop the buffered frames with it).
                    tokio::task::yield_now().await;
                    let broken = io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "pitcrew-sim: simulated disconnect mid-body",
                    );
                    return Some((Err(broken), Vec::new().into_iter()));
                }
            }
        }
    });
    Body::from_stream(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(text: &str, fault: Option<Fault>) -> Reply {
        Reply {
            text: text.into(),
            finish_reason: "stop",
            fault,
            latency: Duration::from_millis(5),
            prompt_tokens: 1,
            completion_tokens: 1,
        }
    }

    fn meta() -> Meta {
        Meta {
            id: "chatcmpl-sim-1".into(),
            model: "sim/coder".into(),
            created: 0,
        }
    }

    const PACE: Pace = Pace {
        between_chunks: Duration::from_millis(1),
        stall: Duration::from_secs(9),
        chunk_tokens: 1,
    };

    fn written(frames: &[Frame]) -> String {
        frames
            .iter()
            .filter_map(|f| match f {
                Frame::Bytes(b) => Some(b.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_clean_stream_ends_with_finish_usage_and_done() {
        let frames = stream_frames(
            &meta(),
            &reply("abcdefgh", None),
            Some(serde_json::json!({"x": 1})),
            PACE,
        );
        let text = written(&frames);
        assert_eq!(text.matches("data: ").count(), 5, "{text}");
        assert!(text.contains("\"finish_reason\":\"stop\""));
        assert!(text.contains("\"usage\":{\"x\":1}"));
        assert!(text.ends_with("data: [DONE]\n\n"));
        assert_eq!(frames[0], Frame::Pause(Duration::from_millis(5)));
    }

    #[test]
    fn each_fault_strikes_at_the_middle_chunk() {
        let text = "aaaabbbbccccdddd";
        let cut = stream_frames(&meta(), &reply(text, Some(Fault::Truncate)), None, PACE);
        assert_eq!(written(&cut).matches("data: ").count(), 2);
        assert!(!written(&cut).contains("[DONE]"));
        let broken = stream_frames(&meta(), &reply(text, Some(Fault::Disconnect)), None, PACE);
        assert_eq!(broken.last(), Some(&Frame::Break));
        let stalled = stream_frames(&meta(), &reply(text, Some(Fault::Stall)), None, PACE);
        assert!(stalled.contains(&Frame::Pause(Duration::from_secs(9))));
        assert!(written(&stalled).ends_with("[DONE]\n\n"));
        let garbled = stream_frames(&meta(), &reply(text, Some(Fault::Malformed)), None, PACE);
        let garbled_text = written(&garbled);
        let bad: Vec<&str> = garbled_text
            .split("\n\n")
            .filter_map(|event| event.strip_prefix("data: "))
            .filter(|payload| *payload != "[DONE]")
            .filter(|payload| serde_json::from_str::<Value>(payload).is_err())
            .collect();
        assert_eq!(bad.len(), 1, "{garbled:?}");
    }

    #[test]
    fn json_faults_cut_the_body() {
        let body = serde_json::json!({"text": "é".repeat(11)});
        assert_eq!(json_frames(&body, None), [Frame::Bytes(body.to_string())]);
        let [Frame::Bytes(half)] = &json_frames(&body, Some(Fault::Truncate))[..] else {
            panic!("one frame")
        };
        assert!(serde_json::from_str::<Value>(half).is_err());
        assert_eq!(
            json_frames(&body, Some(Fault::Disconnect)).last(),
            Some(&Frame::Break)
        );
    }
}
