"""Weighted k-nearest-neighbour accuracy on frozen features (Wu et al. 2018, InstDisc; as DINO evaluates).

Features are compared by cosine similarity; each of a test example's `k` nearest training
examples votes for its class with weight `exp(similarity / temperature)`. Test examples
go in chunks so that a chunk's similarity matrix stays under `max_elements` numbers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


@torch.no_grad()
def knn_predict(train_feats: Tensor, train_y: Tensor, test_feats: Tensor, k: int = 20, temperature: float = 0.07, num_classes: int | None = None, max_elements: int = 2**25) -> Tensor:
    """Class scores (N_test, num_classes): the summed vote weights of each test example's `k` nearest neighbours."""
    num_classes = num_classes or int(train_y.max()) + 1
    k = min(k, train_feats.shape[0])
    train = F.normalize(train_feats.float(), dim=1)
    chunk = max(1, max_elements // max(train.shape[0], 1))
    scores = []
    for start in range(0, test_feats.shape[0], chunk):
        test = F.normalize(test_feats[start : start + chunk].float(), dim=1)
        similarity, neighbours = (test @ train.T).topk(k, dim=1)
        votes = torch.zeros(test.shape[0], num_classes, device=test.device)
        scores.append(votes.scatter_add_(1, train_y[neighbours], (similarity / temperature).exp()))
    return torch.cat(scores) if scores else torch.zeros(0, num_classes, device=train_feats.device)


def knn_accuracy(train_feats: Tensor, train_y: Tensor, test_feats: Tensor, test_y: Tensor, k: int = 20, temperature: float = 0.07, max_elements: int = 2**25) -> float:
    """Fraction (0..1) of `test_feats` whose weighted k-NN vote among `train_feats` is their label `test_y`.

    Example:
        >>> knn_accuracy(train_feats, train_y, test_feats, test_y, k=20, temperature=0.07)
        0.853
    """
    if test_feats.shape[0] == 0:
        return float("nan")
    num_classes = int(torch.maximum(train_y.max(), test_y.max())) + 1
    scores = knn_predict(train_feats, train_y, test_feats, k, temperature, num_classes, max_elements)
    return float((scores.argmax(dim=1) == test_y).float().mean())
