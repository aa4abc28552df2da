"""What serve's worker tells the app, and lets it ask, through each request's WSGI environ."""

# The body size a request declared (by Content-Length or its chunk sizes) when that is
# more than the server accepts: the request is refused without waiting for that body.
DECLARED_BODY = "zapi_dashboard.declared_body"
# A callable: once called, the worker leaves this request's connection open after the
# response, for the app to serve (the live feed's socket), and frees the thread.
KEEP_CONNECTION = "zapi_dashboard.keep_connection"
