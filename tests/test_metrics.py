import numpy as np
import pytest

from fedge.metrics import confusion_matrix, summarize_confusion


def test_confusion_and_summary_match_hand_computation():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0])
    cm = confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    s = summarize_confusion(cm)
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["per_class_recall"] == pytest.approx([0.5, 1.0, 0.5])
    # precision: [0.5, 2/3, 1.0]; f1 per class: [0.5, 0.8, 2/3]
    assert s["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def test_absent_classes_do_not_count_in_macro_f1():
    cm = confusion_matrix(np.array([0, 0]), np.array([0, 0]), 3)
    assert summarize_confusion(cm)["macro_f1"] == pytest.approx(1.0)
