//! `otlp-sink`: an OTLP/gRPC trace receiver on 127.0.0.1 that only counts spans. Prints its
//! endpoint on the first line; each line read on stdin prints the spans received so far; exits
//! at the end of stdin. Used by `scripts/observability-overhead` to measure tracing's cost.

use std::io::Write;

use support::otlp_receiver::OtlpReceiver;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let sink = OtlpReceiver::start_sink().await;
    println!("{}", sink.endpoint());
    let _ = std::io::stdout().flush();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(_)) = lines.next_line().await {
        println!("{}", sink.received());
        let _ = std::io::stdout().flush();
    }
}
