"""Weighted k-NN accuracy against a direct computation, chunking, and on separable and random data."""

from __future__ import annotations

import math

import pytest
import torch

from locallearn.evaluate import knn_accuracies, knn_predict


def test_knn_scores_match_a_direct_computation():
    g = torch.Generator().manual_seed(0)
    train, test = torch.randn(30, 5, generator=g), torch.randn(7, 5, generator=g)
    train_y = torch.randint(0, 3, (30,), generator=g)
    k, t = 4, 0.5
    scores = knn_predict(train, train_y, test, k=k, temperature=t, num_classes=3)
    for i in range(7):
        cosines = [float(test[i] @ train[j] / (test[i].norm() * train[j].norm())) for j in range(30)]
        nearest = sorted(range(30), key=lambda j: -cosines[j])[:k]
        expected = [sum(math.exp(cosines[j] / t) for j in nearest if train_y[j] == c) for c in range(3)]
        assert scores[i].tolist() == pytest.approx(expected, rel=1e-4)


def test_chunking_does_not_change_the_scores():
    g = torch.Generator().manual_seed(1)
    train, test, train_y = torch.randn(50, 4, generator=g), torch.randn(23, 4, generator=g), torch.randint(0, 5, (50,), generator=g)
    whole = knn_predict(train, train_y, test, k=7, num_classes=5)
    chunked = knn_predict(train, train_y, test, k=7, num_classes=5, max_elements=100)  # two test rows per chunk
    assert torch.allclose(whole, chunked)


def test_knn_accuracy_on_separable_and_on_random_labels():
    g = torch.Generator().manual_seed(2)
    centres = torch.randn(4, 16, generator=g) * 5
    train_y, test_y = torch.randint(0, 4, (400,), generator=g), torch.randint(0, 4, (100,), generator=g)
    train = centres[train_y] + torch.randn(400, 16, generator=g)
    test = centres[test_y] + torch.randn(100, 16, generator=g)
    assert knn_accuracies([train], train_y, [test], test_y, k=20, temperature=0.07, chunk=30) == [1.0]
    shuffled = train_y[torch.randperm(400, generator=g)]
    assert knn_accuracies([train], shuffled, [test], test_y, k=20, temperature=0.07)[0] < 0.5
    assert knn_accuracies([train], train_y, [test[:0]], test_y[:0], k=20, temperature=0.07) == [None]
