"""The analyses, each a concept: the Fourier basis and spectra, the model's tables, the fits of
named objects, the key sets and curve, the singular values, ablation, the running sum,
the measures through training, and a model built by hand."""
