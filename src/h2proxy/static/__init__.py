"""Static files: routes that answer from files under a directory, as nginx does in
front of an application. Mapping a request path to a file (paths), validators and
conditionals (validators), byte ranges (ranges), media types (types), reading off
the reactor thread (reader) and answering one request (responder)."""
