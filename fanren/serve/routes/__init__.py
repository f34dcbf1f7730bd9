"""One router per resource: videos and tasks (the seed's API), jobs, batches, the caller's key."""
