"""A FastAPI web app on the web-backend client: submit, live progress over SSE, live preview, output."""
