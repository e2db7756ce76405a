"""Reports: the analysis pipeline that owns contract 5, the paper's claims, report.md and the
console summaries, and the figures."""
