//! How long outbound calls may take when the component does not say.

use std::time::Duration;
use wasmtime_wasi_http::RequestOptions;

/// Timeouts used when the component does not set its own.
pub(super) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub(super) const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// `options` with every timeout the component left unset at its default.
pub(super) fn with_defaults(options: Option<RequestOptions>) -> RequestOptions {
    let mut options = options.unwrap_or_default();
    options.connect_timeout.get_or_insert(DEFAULT_CONNECT_TIMEOUT);
    options.first_byte_timeout.get_or_insert(DEFAULT_RESPONSE_TIMEOUT);
    options.between_bytes_timeout.get_or_insert(DEFAULT_RESPONSE_TIMEOUT);
    options
}
