"""`fanren serve`: the build as an HTTP service — API keys, quotas, a persistent job queue, warm engines.

    client ──HTTP──▶ app (routes per resource) ──▶ store (SQLite: keys, jobs, nodes, events, usage)
                                                        ▲
                        runner (one thread, owns the GPU) ┘──▶ fanren.build (one shared cache)

- store.py    SQLite: keys (hashed), jobs, per-node status, progress events, daily usage
- runner.py   the one thread that builds jobs, oldest first, with engines kept loaded between jobs
- uploads.py  a job's folder from what a client sent: a drama archive, a novel chapter, an image
- given.py    the `given` image engine: a keyframe that is the client's own picture (the seed API)
- app.py      the FastAPI application; routes/ holds one router per resource
- command.py  `fanren serve` and `fanren keys` (loaded lazily: the plain CLI never imports FastAPI)

Nothing here changes how a drama builds: a job is `fanren.build.build()` on a folder of its own.
"""
