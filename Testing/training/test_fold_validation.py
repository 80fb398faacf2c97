"""Tests of NNSegLib.training.fold_validation: a fold's validation cases through inference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from conftest import make_model_folder, write_dataset

from NNSegLib.training.fold_validation import predict_validation
from NNSegLib.util.atomic import write_json


def test_predict_validation_writes_labels_and_probabilities(tmp_path: Path):
    dataset = write_dataset(tmp_path / "Dataset001_T", num_cases=5, shape=(12, 16, 16))
    work = tmp_path / "work"
    root = make_model_folder(work / "results", folds=("0",))
    splits = [{"train": ["case_001", "case_002", "case_003", "case_004"], "val": ["case_000"]}]
    write_json(work / "splits_final.json", splits)
    written = predict_validation(work / "results", "3d_fullres", 0, dataset, work,
                                 device="cpu", tta=False)
    out = root / "3d_fullres" / "fold_0" / "validation"
    assert written == [out / "case_000.nii.gz"]
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(written[0])))
    ref = sitk.ReadImage(str(dataset / "imagesTr" / "case_000_0000.nii.gz"))
    assert labels.shape == sitk.GetArrayFromImage(ref).shape
    with np.load(out / "case_000_probabilities.npz", allow_pickle=False) as f:
        probs = f["probabilities"]
    assert probs.dtype == np.float16 and probs.shape == (3, *labels.shape)
    agree = (probs.astype(np.float32).argmax(0) == labels).mean()
    assert agree > 0.99
