"""`fanren serve`: the build as an HTTP service — API keys, quotas, a persistent job queue, warm engines.

    client ──HTTP──▶ app (routes per resource) ──▶ store (SQLite: keys, jobs, nodes, events, usage)
                                                        ▲
                        runner (one thread, owns the GPU) ┘──▶ fanren.build (one shared cache)

- store.py    SQLite: keys (hashed), jobs, per-node status, progress events, daily usage
- runner.py   the one thread that builds jobs, oldest first, with engines kept loaded between jobs
- submit.py   accepting work: idempotency, quotas, queue limits, the job's folder, the queue
- uploads.py  a job's folder from what a client sent: a drama archive, a picture
- seed.py     the seed's video request as a one-shot drama; model_type → video engine per profile
- given.py    the `given` image engine: a keyframe that is the client's own picture (the seed API)
- app.py      the FastAPI application; routes/ holds one router per resource, deps.py what they
              depend on (settings, store, runner, the caller's key), models.py every body, views.py
              jobs as clients see them
- command.py  `fanren serve` and `fanren keys` (loaded lazily: the plain CLI never imports FastAPI)

See docs/serve.md for the API.

Nothing here changes how a drama builds: a job is `fanren.build.build()` on a folder of its own.
"""
