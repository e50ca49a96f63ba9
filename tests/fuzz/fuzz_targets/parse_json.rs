//! The JSON dialect's parser runs on the net thread for every message a JSON client sends: any
//! bytes must come back as a request (a refusal such as `bad request` included), never as a
//! panic. Whatever it makes of them, the reply the logic thread would render for a refusal must
//! be one JSON object.

#![no_main]

use libfuzzer_sys::fuzz_target;
use websocket::chat::{Answer, ChatError, Dialect};
use websocket::dialect;
use websocket::ws::text_payload;

fuzz_target!(|data: &[u8]| {
    let request = dialect::parse(Dialect::Json, data);
    let result: Result<Answer<'_>, ChatError> = match &request.intent {
        Ok(_) => Ok(Answer::Done),
        Err(e) => Err(e.clone()),
    };
    let frame = dialect::render_reply(
        Dialect::Json,
        request.mid,
        request.kind,
        &request.tag,
        &result,
    )
    .expect("every JSON request is answered");
    let text = text_payload(&frame).expect("one text frame");
    let value: serde_json::Value = serde_json::from_slice(text).expect("the reply is JSON");
    assert!(value.is_object(), "the reply is an object: {value}");
});
