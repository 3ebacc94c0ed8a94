"""WebSocket and HTTP gateway: scoped, audited, resumable alert feeds for dashboards."""
