"""Where negative log-likelihood comes from
========================================

Where negative log-likelihood comes from: ``python -m fastnll demo``.

Five worked examples, every number computed with fastnll (and checked against SciPy by the
tests): the likelihood of five measurements under two normal distributions and why the
better fit has the lower negative log-likelihood; maximum likelihood by gradient descent on
``gaussian_nll_loss`` (gradients from ``return_grad=True``) landing on the sample mean and
the population standard deviation; why we take logs (a product of 400 probabilities
underflows, their log-sum does not); the entropy of a fair, a biased and an almost loaded
die, and cross-entropy = entropy + KL divergence for observed rolls; and NLL over class
indices being cross-entropy against one-hot targets.

This file runs the same command as ``python -m fastnll demo``.
"""
from fastnll.__main__ import main

status = main(["demo"])
assert status == 0, status
