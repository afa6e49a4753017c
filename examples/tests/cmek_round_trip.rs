//! Runs the CMEK example end to end (a real server on 127.0.0.1), so CI proves it works.

#[path = "../cmek_round_trip.rs"]
mod example;

#[tokio::test(flavor = "current_thread")]
async fn the_cmek_example_round_trips_and_rotates() {
    if let Err(err) = example::run().await {
        panic!("the CMEK example failed: {err}");
    }
}
