"""The HTTP inference server: dynamic batching, streaming sessions, Prometheus metrics.

`create_app(settings)` builds the FastAPI app; `serve(settings)` runs it under uvicorn.
"""
