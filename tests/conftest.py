"""One shared hypothesis profile: no deadline, so numba's first-call compilation never
fails a test, and a fixed number of examples so `make test` takes a known time."""
from hypothesis import HealthCheck, settings

settings.register_profile(
    "tinymod", deadline=None, max_examples=30, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("tinymod")
