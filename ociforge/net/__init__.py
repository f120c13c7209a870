"""The one HTTP path: every request ociforge makes goes through here.

- `retry`: the retry policy (which answers and errors are worth another try, how long
  to wait: exponential backoff with full jitter, a server's `Retry-After` honoured up
  to a cap, a budget of attempts). No dependency on `requests`.
- `redact`: `redact(url)`, applied to every URL printed, recorded or raised.
- `credentials`: `Credentials`, the `CredentialHook` seam that attaches auth per
  request (Maven basic auth, registry tokens), and `is_loopback`.
- `http`: the session factory, `send` (one attempt), `request` (send under the
  policy), `retrying` (the one retry loop), `reason(exc)`.

Importing this package is free; only `net.http` imports `requests`, so modules that
load on every run (recipes, sources) import it inside the functions that talk HTTP.
"""
