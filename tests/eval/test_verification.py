import numpy as np
import pytest

from facerec.eval.pairs import sample_pairs
from facerec.eval.verification import best_threshold, kfold_accuracy, verify_embeddings


def brute_force_best(scores, same):
    candidates = np.concatenate([scores, [scores.min() - 1, scores.max() + 1]])
    return max(((scores >= t) == same).mean() for t in candidates)


@pytest.mark.parametrize("seed", range(5))
def test_best_threshold_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    same = rng.random(300) < 0.5
    scores = np.round(rng.normal(same * 1.0, 1.0), 1)  # rounding creates ties
    t, acc = best_threshold(scores, same)
    assert acc == pytest.approx(brute_force_best(scores, same))
    assert ((scores >= t) == same).mean() == pytest.approx(acc)


def test_kfold_uses_thresholds_from_the_other_folds():
    rng = np.random.default_rng(0)
    same = rng.random(600) < 0.5
    scores = rng.normal(same * 2.0, 1.0)
    folds = np.repeat(np.arange(10), 60)
    res = kfold_accuracy(scores, same, folds)
    for f in range(10):
        t, _ = best_threshold(scores[folds != f], same[folds != f])
        expected = ((scores[folds == f] >= t) == same[folds == f]).mean()
        assert res.fold_accuracies[f] == pytest.approx(expected)
    assert 0.75 < res.accuracy < 0.9  # separation of 2 sigma: about 84%


def test_separable_scores_give_perfect_accuracy():
    same = np.array([True, False] * 50)
    assert kfold_accuracy(same * 1.0 + 0.1, same, 5).accuracy == 1.0


def test_pairs_are_balanced_and_correct():
    labels = np.repeat(np.arange(10), 4)
    pairs = sample_pairs(labels, 200, seed=1)
    i, j, same = pairs.left, pairs.right, pairs.same
    assert same.sum() == 100 and len(np.unique(pairs.fold)) == 10
    assert ((labels[i] == labels[j]) == same).all()
    assert (i[same] != j[same]).all()


def test_verify_embeddings_on_clustered_points():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(20, 16))
    labels = np.repeat(np.arange(20), 5)
    emb = centers[labels] + rng.normal(size=(100, 16)) * 0.1
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    assert verify_embeddings(emb, labels, 1000).accuracy > 0.99


def test_single_protocol_fold_is_split_into_interleaved_subfolds():
    same = np.array([True] * 300 + [False] * 300)  # LFW order inside a fold
    scores = np.where(same, 1.0, 0.0) + np.random.default_rng(0).normal(0, 0.3, 600)
    res = kfold_accuracy(scores, same, np.zeros(600, dtype=int))
    assert len(res.fold_accuracies) == 10 and 0.9 < res.accuracy < 1.0
