"""Several `hotline serve` processes as one hotline: who is alive (presence), what to do when one dies (the sweeper),
and whether the shared services answer (health). Used only with `redis_url`; one process needs none of it."""
