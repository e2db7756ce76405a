"""The sweep's cluster: reaching an external dask scheduler (address, handshake and first
worker each within a deadline, one line otherwise), checking that every worker sees the
sweep folder, or starting a LocalCluster."""
import os
import re
import threading

from tinymod.errors import TinymodError
from tinymod.training import runs

CONNECT_SECONDS = 10     # to reach a scheduler, handshake included
WORKER_SECONDS = 30      # for an external scheduler's first worker to be there

SCHEDULER = re.compile(r"tcp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})")


def check_scheduler(address):
    """A scheduler address tinymod can reach: tcp://HOST:PORT (an IPv6 host in brackets)."""
    match = SCHEDULER.fullmatch(address)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise TinymodError(f"--scheduler must be tcp://HOST:PORT (a dask scheduler's address), "
                           f"got {address[:80]!r}")
    return address


def _connect(address):
    """A Client of the scheduler at `address`, or a one-line error after CONNECT_SECONDS,
    whatever the peer does (a socket that accepts and never speaks included)."""
    from dask.distributed import Client
    result = {}

    def connect():
        try:
            result["client"] = Client(address, timeout=f"{CONNECT_SECONDS}s")
        except BaseException as e:            # noqa: BLE001 - reported in the caller's thread
            result["error"] = e
    thread = threading.Thread(target=connect, daemon=True)   # a hung handshake cannot hold the exit
    thread.start()
    thread.join(CONNECT_SECONDS + 1)
    if "client" in result:
        return result["client"]
    why = str(result.get("error") or f"no answer in {CONNECT_SECONDS} s").splitlines()[0][:200]
    raise TinymodError(f"cannot reach the dask scheduler at {address}: {why}")


def client_for(workers, scheduler, worker_seconds=WORKER_SECONDS):
    """(client, local cluster or None): of the external `scheduler` once a worker is there, else
    of a LocalCluster of `workers` one-thread processes."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise TinymodError("tinymod sweep needs dask.distributed: in a clone of tinymod, "
                           "pip install '.[sweep]'") from None
    if scheduler:
        client = _connect(check_scheduler(scheduler))
        try:                     # a scheduler with no worker would take the runs and never run them
            client.wait_for_workers(1, timeout=worker_seconds)
        except (TimeoutError, OSError):
            client.close()
            raise TinymodError(f"no worker joined the scheduler at {scheduler} within {worker_seconds:g} s "
                               f"(--connect-timeout); start one (dask worker {scheduler}) and sweep again") from None
        return client, None
    cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                           processes=True, dashboard_address=None)
    return Client(cluster), cluster


def check_workers_see(client, out):
    """Before any run is sent to an external scheduler's workers: each must see `out` as the
    client's own folder (a marker the client writes there) and be able to write to it, else
    one line; a worker on a machine without the shared folder would train elsewhere."""
    import secrets
    marker = out / f".probe-{secrets.token_hex(8)}"
    runs.atomic_write(marker, lambda f: f.write(b"tinymod sweep probe\n"))
    try:
        answers = client.run(probe, str(out), marker.name)
    finally:
        marker.unlink(missing_ok=True)
    for worker, problem in sorted(answers.items()):
        if problem:
            raise TinymodError(f"the worker at {worker} {problem}: give --out a folder every worker shares")


def probe(folder, marker):
    """On a worker: what keeps it from writing the client's `folder`, or None."""
    if not os.path.isfile(os.path.join(folder, marker)):
        return f"does not see {folder} as the client's folder (not there, or another machine's)"
    if not os.access(folder, os.W_OK):
        return f"cannot write to {folder}"
    return None
