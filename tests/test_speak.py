"""Long commands speak: a line per stage, and a time estimate from the first counted steps on."""
from tinymod.analysis import ablate
from tinymod.model import rnn
from tinymod.reports.speak import Voice


def test_a_stage_gives_an_estimate_after_its_first_step_and_then_every_few_seconds():
    lines, now = [], [0.0]
    voice = Voice(lines.append, every=5.0, clock=lambda: now[0])
    voice.stage("ablate", total=10)
    for _ in range(10):
        now[0] += 2.0
        voice.tick()
    voice.finish()
    assert lines == ["[   0.0 s] ablate (10 steps)",
                     "[   2.0 s] ablate: 1/10, about 18 s left",       # 2 s a step, 9 to go
                     "[   8.0 s] ablate: 4/10, about 12 s left",
                     "[  14.0 s] ablate: 7/10, about 6 s left",
                     "[  20.0 s] done"]

def test_ablation_ticks_once_per_evaluation_it_counts():
    params = rnn.init_params(11, 4, 6, seed=0, dtype="float64")
    ticks = []
    config = {"p": 11, "activation": "relu", "frac": 0.5, "seed": 0, "seq_len": 2}
    ablate.measure_removals(params, config, [1, 4], {1: 2.0, 4: 1.0}, seeds=2, tick=lambda: ticks.append(1))
    assert len(ticks) == ablate.evaluations(11, [1, 4], seeds=2) == 1 + 5 + 2 * 3 + 2
