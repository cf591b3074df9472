import pytest

from wildvision.evaluate import THRESHOLD_FLOOR, choose_threshold, compute_metrics, resolve_device, threshold_for_precision


def test_metrics_are_weighted_over_both_classes_as_in_the_paper():
    # 4 positives, 6 negatives; predictions at 0.5: TP=3, FN=1, FP=2, TN=4
    labels = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    probabilities = [0.9, 0.8, 0.7, 0.2, 0.6, 0.55, 0.1, 0.2, 0.3, 0.4]
    m = compute_metrics(labels, probabilities)
    assert m["accuracy"] == pytest.approx(0.7)
    precision_pos, precision_neg = 3 / 5, 4 / 5
    recall_pos, recall_neg = 3 / 4, 4 / 6
    f_pos = 2 * precision_pos * recall_pos / (precision_pos + recall_pos)
    f_neg = 2 * precision_neg * recall_neg / (precision_neg + recall_neg)
    assert m["precision"] == pytest.approx(0.4 * precision_pos + 0.6 * precision_neg)
    assert m["recall"] == pytest.approx(0.4 * recall_pos + 0.6 * recall_neg)
    assert m["f_score"] == pytest.approx(0.4 * f_pos + 0.6 * f_neg)
    assert m["positive_precision"] == pytest.approx(0.6)
    assert m["confusion_matrix"] == [[4, 2], [1, 3]]
    assert m["n_images"] == 10


def test_threshold_moves_the_decision():
    labels = [1, 0]
    assert compute_metrics(labels, [0.7, 0.6], threshold=0.5)["positive_precision"] == 0.5
    assert compute_metrics(labels, [0.7, 0.6], threshold=0.65)["positive_precision"] == 1.0


def test_threshold_for_a_target_precision_keeps_the_most_recall():
    labels = [0, 0, 1, 0, 1, 1, 1]
    probabilities = [0.1, 0.3, 0.4, 0.5, 0.6, 0.8, 0.9]
    rule = threshold_for_precision(labels, probabilities, target=0.95)
    assert rule == {"threshold": 0.6, "target_precision": 0.95, "met": True, "precision": 1.0, "recall": 0.75}
    lenient = threshold_for_precision(labels, probabilities, target=0.7)
    assert lenient["threshold"] == 0.4 and lenient["recall"] == 1.0  # precision 4/5 at 0.4


def test_unreachable_precision_is_reported_not_hidden():
    rule = threshold_for_precision([1, 0, 1, 0], [0.9, 0.9, 0.8, 0.8], target=0.99)
    assert rule["met"] is False and rule["precision"] == 0.5


def test_a_missing_gpu_is_a_value_error_that_names_the_device_and_carries_the_no_cuda_hint(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"^device cuda:1 was asked for, but no CUDA GPU is available here$") as info:
        resolve_device("cuda:1")
    assert info.value.hint == "no_cuda"  # each place words the advice (wording.HINTS); the message names no option
    assert resolve_device("auto").type == "cpu"


def _scores(**sets: tuple[list[int], list[float]]) -> dict:
    return {name: {"labels": labels, "probabilities": probabilities} for name, (labels, probabilities) in sets.items()}


def test_a_threshold_chosen_on_test_in_is_never_below_one_half():
    easy = ([0] * 10 + [1] * 10, [0.01] * 10 + [0.2] * 10)  # test_in: every positive above every negative, at low scores
    other = ([0] * 4 + [1] * 4, [0.3, 0.3, 0.3, 0.6, 0.7, 0.7, 0.8, 0.9])
    rule = choose_threshold(_scores(test_in=easy, test_out=other), target=0.95)
    assert rule["threshold"] == THRESHOLD_FLOOR and rule["below_floor"] == pytest.approx(0.2) and rule["chosen_on"] == "test_in"
    assert rule["precision"] == 0.0 and not rule["met"]  # at 0.5 nothing on test_in is flagged: said, not hidden
    assert compute_metrics(*other, THRESHOLD_FLOOR)["positive_precision"] == pytest.approx(0.8)  # against 4 of 8 at 0.2


def test_a_threshold_above_one_half_is_kept_and_a_named_set_calibrates_without_the_floor():
    hard = ([0] * 10 + [1] * 10, [0.1] * 9 + [0.8] + [0.9] * 10)
    rule = choose_threshold(_scores(test_in=hard), target=0.95)
    assert rule["threshold"] == pytest.approx(0.9) and "below_floor" not in rule
    market = ([0] * 6 + [1] * 4, [0.05] * 6 + [0.3] * 4)
    calibrated = choose_threshold(_scores(test_in=hard, market=market), target=0.95, calibrate_on="market")
    assert calibrated["threshold"] == pytest.approx(0.3) and calibrated["chosen_on"] == "market" and calibrated["met"]
    with pytest.raises(ValueError, match="no scores for 'elsewhere'"):
        choose_threshold(_scores(test_in=hard), target=0.95, calibrate_on="elsewhere")
