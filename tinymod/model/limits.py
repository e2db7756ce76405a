"""What every layer shares about a model's size and success, owned here, below its users:
the test accuracy that counts as grokked, the evaluation batch, the largest tuple count,
and the memory probe that refuses what would not fit."""
import math
import os

from tinymod.errors import TinymodError

MAX_EXAMPLES = 5_000_000   # p**seq_len above this would not fit a laptop's memory
GROK_ACC = 0.99            # test accuracy that counts as grokked (grok step, phases, figures)
EVAL_BATCH = 20_000        # examples per evaluation batch (training's evaluations, ablation, key sets)


def available_memory():
    """Bytes of memory available now (Linux MemAvailable), else the physical total, else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(nbytes, what):
    """Refuse, with the size it would need, what would not fit in 80% of available memory."""
    available = available_memory()
    if available is not None and nbytes > 0.8 * available:
        raise TinymodError(f"{what} needs about {nbytes / 2**30:.1f} GiB of memory, and this "
                           f"machine has {available / 2**30:.1f} GiB available")


def tuples_fit(p, T):
    """Whether p**T tuples are at most MAX_EXAMPLES (in logarithms: p**T itself could take
    minutes to compute)."""
    # p >= 2: no T above 23 fits, and T * log(p) of a T with hundreds of digits would overflow
    return T <= 64 and T * math.log(max(p, 2)) <= math.log(MAX_EXAMPLES) + 1e-9


def check_analysis(p, T, H):
    """Refuse an analysis of all p**T tuples that is too many or would not fit in memory."""
    if not tuples_fit(p, T):
        raise TinymodError(f"the analysis evaluates all {p}**{T} tuples, more than {MAX_EXAMPLES:,}")
    # the arrays over all tuples (logits, inputs, T + 2 hidden-sized ones), three times: `fourier`'s
    # peak RSS measured 2.2-2.6x their sum at p = 113, H = 1024 and 2237 (its spectra are complex)
    check_memory(3 * 8 * p ** T * (2 * p + (T + 2) * H), f"analysing all {p}**{T} tuples")
