"""The stream session's states (the rows of `_session._CLIENT_BYTES`), shared by its parts."""

NEW, PROXYHDR, PREREAD, CONNECTING, RELAY, DONE = "new", "proxy", "preread", "connecting", "relay", "done"
