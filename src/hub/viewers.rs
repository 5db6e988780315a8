//! Viewer-count pushes: once a second, each local room whose stream's count (across all
//! instances) changed since its last push gets one `viewers` frame.

use std::time::Duration;

use super::Hub;
use crate::background::Background;
use crate::broker::Broker;

const PUSH_EVERY: Duration = Duration::from_secs(1);

pub(super) fn spawn(hub: Hub, broker: Broker, background: &Background) {
    background.every(PUSH_EVERY, move || {
        let (hub, broker) = (hub.clone(), broker.clone());
        async move {
            let streams = hub.local_streams();
            if streams.is_empty() {
                return;
            }
            match broker.viewer_counts(&streams).await {
                Ok(counts) => {
                    for (stream, count) in streams.iter().zip(counts) {
                        hub.push_viewers(stream, count);
                    }
                }
                Err(error) => tracing::warn!(%error, "could not read viewer counts"),
            }
        }
    });
}
