"""hand3d predict: images of odd sizes, whole-image / boxes / OpenPose crops, left hands mirrored in and out."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from hand3d.camera import project_weak_perspective
from hand3d.cli import main
from hand3d.predict import load_boxes, predict

SIZES = [(97, 173), (211, 50), (64, 64)]  # (height, width)


@pytest.fixture()
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i, (h, w) in enumerate(SIZES):
        cv2.imwrite(str(folder / f"img{i}.png"), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    (folder / "broken.jpg").write_bytes(b"not an image")
    return folder


def _read_obj(path):
    lines = path.read_text().splitlines()
    vertices = np.array([[float(v) for v in line.split()[1:]] for line in lines if line.startswith("v ")])
    faces = np.array([[int(v) for v in line.split()[1:]] for line in lines if line.startswith("f ")])
    return vertices, faces


def test_whole_images_of_odd_sizes_give_mesh_json_and_overlay(fixed_model, images, tmp_path):
    model_path, params = fixed_model
    out = tmp_path / "out"
    done = predict([str(images)], str(model_path), str(out), batch_size=2)
    assert done.hands == 3 and done.issues == {"unreadable image": 1}
    for i, (h, w) in enumerate(SIZES):
        record = json.loads((out / f"img{i}_0.json").read_text())
        assert record["hand"] == "right" and len(record["mano"]["hand_pose"]) == 15
        assert record["mano"]["hand_pose_pca"] == pytest.approx(params[6:12].tolist(), abs=1e-5)
        assert record["camera"]["crop"] == pytest.approx(params[:3].tolist(), rel=1e-5)
        # the image camera projects the written 3D keypoints onto the written 2D ones
        kp3d, kp2d = np.array(record["keypoints_3d"]), np.array(record["keypoints_2d"])
        assert project_weak_perspective(kp3d, np.array(record["camera"]["image"])) == pytest.approx(kp2d, abs=1e-3)
        # the whole image is the crop, centred: its side is the longer image side
        side, (s, tx, ty) = max(h, w), params[:3].tolist()
        x0, y0 = (w - side) // 2, (h - side) // 2
        k = side / 320
        expected = [k * s, k * (tx + 0.5) - 0.5 + x0, k * (ty + 0.5) - 0.5 + y0]
        assert record["camera"]["image"] == pytest.approx(expected, rel=1e-5)
        assert record["crop_box"] == {"x0": x0, "y0": y0, "side": side, "mirrored": False}
        overlay = cv2.imread(str(out / f"img{i}_overlay.png"))
        assert overlay.shape == (h, w, 3)
        vertices, faces = _read_obj(out / f"img{i}_0.obj")
        assert faces.min() == 1 and vertices.shape[1] == 3
    picture = cv2.imread(str(images / "img0.png")).astype(int)
    changed = np.abs(cv2.imread(str(out / "img0_overlay.png")).astype(int) - picture).max(axis=2) > 30
    assert changed.mean() > 0.02, "the mesh is drawn over the image"


def test_the_written_joint_rotations_pose_smplx_mano_as_the_model_did(fixed_model, images, tmp_path, hand_model_path):
    """``hand_pose`` is absolute (PCA times components plus MANO's mean pose): fed to smplx's full-pose MANO with a
    flat mean, it gives the mesh the model predicted."""
    import smplx
    import torch

    from hand3d.hand_model import load_hand_model_arrays
    from hand3d.model import load_model

    model_path, params = fixed_model
    predict([str(images / "img0.png")], str(model_path), str(tmp_path), batch_size=1)
    mano = json.loads((tmp_path / "img0_0.json").read_text())["mano"]
    arrays = load_hand_model_arrays(hand_model_path)
    full = smplx.MANO(str(hand_model_path), data_struct=smplx.utils.Struct(**arrays), use_pca=False,
                      flat_hand_mean=True)  # fmt: skip
    with torch.no_grad():
        given = {k: torch.tensor(np.ravel(mano[k])[None], dtype=torch.float32) for k in ("global_orient", "hand_pose")}
        posed = full(betas=torch.tensor([mano["betas"]], dtype=torch.float32), **given)
        predicted = load_model(model_path).decode(params[None]).vertices[0]
    np.testing.assert_allclose(posed.vertices[0].numpy(), predicted.numpy(), atol=1e-5)


def test_left_hands_are_mirrored_in_and_out(fixed_model, images, tmp_path):
    model_path, _ = fixed_model
    image = images / "img0.png"
    predict([str(image)], str(model_path), str(tmp_path / "right"))
    predict([str(image)], str(model_path), str(tmp_path / "left"), left=True)
    right = json.loads((tmp_path / "right/img0_0.json").read_text())
    left = json.loads((tmp_path / "left/img0_0.json").read_text())
    assert left["hand"] == "left" and left["crop_box"]["mirrored"]
    kp_r, kp_l = np.array(right["keypoints_3d"]), np.array(left["keypoints_3d"])
    assert kp_l == pytest.approx(kp_r * [-1, 1, 1], abs=1e-6)
    # the model ignores pixels, so the left hand is the right one mirrored about the crop's vertical axis
    box = right["crop_box"]
    axis = 2 * box["x0"] + box["side"] - 1
    uv_r, uv_l = np.array(right["keypoints_2d"]), np.array(left["keypoints_2d"])
    assert uv_l[:, 0] == pytest.approx(axis - uv_r[:, 0], abs=1e-3)
    assert uv_l[:, 1] == pytest.approx(uv_r[:, 1], abs=1e-3)
    assert project_weak_perspective(kp_l, np.array(left["camera"]["image"])) == pytest.approx(uv_l, abs=1e-3)
    v_r, f_r = _read_obj(tmp_path / "right/img0_0.obj")
    v_l, f_l = _read_obj(tmp_path / "left/img0_0.obj")
    assert v_l == pytest.approx(v_r * [-1, 1, 1], abs=1e-5)
    assert np.array_equal(f_l, f_r[:, ::-1]), "mirrored meshes keep outward normals"


def test_boxes_file_gives_one_output_per_hand(fixed_model, images, tmp_path):
    model_path, _ = fixed_model
    boxes = tmp_path / "boxes.json"
    hands = [{"box": [10, 20, 30, 40], "hand": "right"}, {"box": [100, 10, 20, 20], "hand": "left"}]
    boxes.write_text(json.dumps({"img0.png": hands}))
    done = predict([str(images / "img0.png"), str(images / "img1.png")], str(model_path), str(tmp_path / "o"), boxes)
    assert done.hands == 2 and done.issues == {"no hand found": 1}
    first = json.loads((tmp_path / "o/img0_0.json").read_text())
    second = json.loads((tmp_path / "o/img0_1.json").read_text())
    assert first["crop_box"] == {"x0": -19, "y0": -4, "side": 88, "mirrored": False}  # 2.2 x 40 around (25, 40)
    assert second["hand"] == "left"
    assert (tmp_path / "o/img0_overlay.png").is_file() and not (tmp_path / "o/img1_0.json").exists()
    assert not (tmp_path / "o/img1_overlay.png").exists(), "an image skipped for want of a hand leaves no output"


def test_a_box_that_misses_its_image_is_skipped_and_counted(fixed_model, images, tmp_path):
    model_path, _ = fixed_model
    boxes = tmp_path / "boxes.json"
    hands = [{"box": [-450, 10, 50, 50], "hand": "right"}, {"box": [10, 20, 30, 40], "hand": "left"}]
    boxes.write_text(json.dumps({"img0.png": hands, "img2.png": [{"box": [70, 0, 10, 10]}]}))  # img2 is 64 px wide
    inputs = [str(images / "img0.png"), str(images / "img2.png")]
    done = predict(inputs, str(model_path), str(tmp_path / "o"), str(boxes))
    assert done.hands == 1 and done.issues == {"box outside the image": 2}
    assert json.loads((tmp_path / "o/img0_0.json").read_text())["hand"] == "left"
    assert not (tmp_path / "o/img2_overlay.png").exists()


def test_a_damaged_detections_file_skips_its_image_only(hand_model_path, images, tmp_path):
    from hand3d.model import HandRegressor, save_model

    model_path = tmp_path / "rgb.pt"
    save_model(model_path, HandRegressor(hand_model_path, backbone="resnet18", inputs="rgb", input_size=64))
    detections = tmp_path / "openpose"
    detections.mkdir()
    hand = np.column_stack([np.linspace(10, 40, 21), np.linspace(5, 30, 21), np.full(21, 0.9)])
    person = {"hand_right_keypoints_2d": hand.ravel().tolist()}
    (detections / "img0_keypoints.json").write_text(json.dumps({"people": [person]}))
    (detections / "img2_keypoints.json").write_text(json.dumps({"people": [person]})[:-9])
    inputs = [str(images / "img0.png"), str(images / "img2.png")]
    done = predict(inputs, str(model_path), str(tmp_path / "o"), openpose=str(detections))
    assert done.hands == 1 and done.issues == {"unreadable detections": 1}
    assert (tmp_path / "o/img0_0.json").is_file() and not (tmp_path / "o/img2_0.json").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "mapping image names"),
        ('{"a.png": [{"box": [1, 2]}]}', r"\[x, y, w, h\]"),
        ('{"a.png": [{"box": [1, 2, 0, 5]}]}', "'a.png' hand 0: the box needs a positive width and height"),
        ('{"a.png": [{"box": [0, 0, Infinity, 10]}]}', "'a.png' hand 0: 'box' must be .*finite"),
        ('{"a.png": [{"box": [0, 0, true, 10]}]}', "'a.png' hand 0: 'box' must be"),
        ("{", "readable"),
    ],
)
def test_bad_boxes_file_is_refused_naming_it(tmp_path, content, message):
    path = tmp_path / "boxes.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=f"boxes.json.*{message}"):
        load_boxes(path)


def test_openpose_detections_crop_and_feed_an_rgb2d_model(hand_model_path, images, tmp_path, monkeypatch):
    import hand3d.predict as predict_module
    from hand3d.crop import CropBox, to_crop
    from hand3d.model import HandRegressor, save_model

    fed, real_predict_crops = [], predict_module.predict_crops  # the heatmaps the network is given

    def predict_crops_noting_heatmaps(model, crops, maps, **kwargs):
        fed.append(maps)
        return real_predict_crops(model, crops, maps, **kwargs)

    monkeypatch.setattr(predict_module, "predict_crops", predict_crops_noting_heatmaps)

    model_path = tmp_path / "rgb2d.pt"
    save_model(model_path, HandRegressor(hand_model_path, backbone="resnet18", inputs="rgb+2d", input_size=64))
    with pytest.raises(ValueError, match="heatmaps"):
        predict([str(images / "img0.png")], str(model_path), str(tmp_path / "o"))
    detections = tmp_path / "openpose"
    detections.mkdir()
    rng = np.random.default_rng(2)
    hand = np.column_stack([rng.uniform(60, 110, 21), rng.uniform(30, 70, 21), np.full(21, 0.8)])
    person = {"hand_left_keypoints_2d": hand.ravel().tolist(), "hand_right_keypoints_2d": [0.0] * 63}
    (detections / "img0_keypoints.json").write_text(json.dumps({"people": [person]}))
    done = predict([str(images)], str(model_path), str(tmp_path / "o"), openpose=str(detections))
    assert done.hands == 1, "only the left hand has confident keypoints"
    assert done.issues == {"unreadable image": 1, "no hand found": 2}
    record = json.loads((tmp_path / "o/img0_0.json").read_text())
    assert record["hand"] == "left"
    # each heatmap peaks where its detection lies in the mirrored crop (80-px maps of the 320-px crop)
    box = CropBox(**record["crop_box"])
    (maps,) = fed
    size = maps.shape[-1]
    for k, (x, y) in enumerate(to_crop(hand, box)[:, :2]):
        row, col = divmod(int(maps[0, k].argmax()), size)
        peak = (np.array([col, row]) + 0.5) * 320 / size - 0.5
        assert np.abs(peak - [x, y]).max() <= 320 / size, (k, peak, (x, y))
        assert 0.7 * 255 < maps[0, k].max() <= 0.8 * 255 + 1  # the detection's confidence, sampled near its peak


def test_cli_predict_reports_errors_plainly(fixed_model, images, tmp_path, capsys):
    model_path, _ = fixed_model
    assert main(["predict", str(images / "img2.png"), "--model", str(model_path), "--out", str(tmp_path / "o")]) == 0
    assert "wrote 1 hand to" in capsys.readouterr().out
    run_folder = ["--model", str(model_path.parent), "--out", str(tmp_path / "f")]  # the folder of its model.pt
    assert main(["predict", str(images / "img2.png"), *run_folder]) == 0 and (tmp_path / "f/img2_0.obj").is_file()
    assert main(["predict", str(tmp_path / "missing"), "--model", str(model_path), "--out", str(tmp_path)]) == 2
    assert "missing: no such image or folder" in capsys.readouterr().err
    for folder in ("a", "b"):  # the same name in two folders: the outputs would overwrite each other
        (tmp_path / "twins" / folder).mkdir(parents=True)
        shutil.copy(images / "img2.png", tmp_path / "twins" / folder / "img2.png")
    assert main(["predict", str(tmp_path / "twins"), "--model", str(model_path), "--out", str(tmp_path / "t")]) == 2
    assert "img2.png would write the same outputs (img2_<k>.obj, ...)" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()
    if not torch.cuda.is_available():
        assert (
            main(["predict", str(images), "--model", str(model_path), "--out", str(tmp_path), "--device", "cuda"]) == 2
        )
        assert "device 'cuda:0' asked for, but CUDA is not available here" in capsys.readouterr().err


def test_a_moved_results_tree_finds_its_hand_model(tmp_path, monkeypatch):
    from hand3d.model import find_hand_model

    hand = tmp_path / "run/results/hand_model/MANO_RIGHT.npz"
    model = tmp_path / "run/results/models/rgb/model.pt"
    for path in (hand, model):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    monkeypatch.chdir(tmp_path)  # not the workflow directory: the stored relative path does not resolve from here
    assert (
        find_hand_model(model, "results/hand_model/MANO_RIGHT.npz")
        == tmp_path / "run/results/hand_model/MANO_RIGHT.npz"
    )
    hand.unlink()
    with pytest.raises(FileNotFoundError, match="--hand-model"):
        find_hand_model(model, "results/hand_model/MANO_RIGHT.npz")


def test_a_model_from_another_workflow_directory_finds_its_own_hand_model(tmp_path, monkeypatch):
    from hand3d.model import find_hand_model

    stored = "results/hand_model/MANO_RIGHT.npz"
    for path in (tmp_path / "here" / stored, tmp_path / "there" / stored, tmp_path / "there/results/models/rgb/x.pt"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    monkeypatch.chdir(tmp_path / "here")  # a workflow directory with a hand model of its own
    assert find_hand_model(tmp_path / "there/results/models/rgb/x.pt", stored) == tmp_path / "there" / stored
    copied = find_hand_model(tmp_path / "elsewhere/x.pt", stored)  # a model file copied out of its tree
    assert copied.resolve() == tmp_path / "here" / stored
