"""The `hand3d` command line, for people who are not running the whole workflow.

hand3d mesh    --model results/hand_model/MANO_RIGHT.npz --pose 2,0,0 --out hand.obj
hand3d inspect results/hand_model/MANO_RIGHT.npz
hand3d inspect results/datasets/stb_test.h5 --preview stb_test.png
hand3d inspect results/models/rgb/model.pt
hand3d predict --model results/models/rgb/model.pt photos/ --out predictions/
hand3d predict --model results/models/rgb/model.pt --format freihand FreiHAND_pub_v2 --out pred.json
hand3d evaluate --model results/models/rgb/model.pt --test results/datasets/stb_test.h5 --out eval_stb/
hand3d eval-freihand --pred pred.json --gt FreiHAND_pub_v2_eval --out scores.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from hand3d.datasets.registry import DATASETS

DEFAULT_MODEL = "results/hand_model/MANO_RIGHT.npz"


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _positive(kind: type) -> Callable[[str], float]:
    """An argparse type: a number of `kind` above zero."""

    noun = "an integer" if kind is int else "a number"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def _padded(values: list[float], size: int, name: str) -> list[float]:
    if len(values) > size:
        raise SystemExit(f"hand3d mesh: --{name} takes at most {size} numbers, got {len(values)}")
    return values + [0.0] * (size - len(values))


def _rotation(text: str) -> list[float]:
    values = _floats(text)
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"an axis-angle rotation is 3 numbers x,y,z, got {len(values)}")
    return values


def cmd_mesh(args: argparse.Namespace) -> int:
    """Write the OBJ mesh (and optionally the 21 keypoints as JSON) of a hand with the given parameters."""
    import torch

    from hand3d.atomic import atomic_write_json
    from hand3d.hand_layer import NUM_BETAS, HandLayer
    from hand3d.hand_model import write_obj

    layer = HandLayer(args.model, num_pca=args.num_pca)
    rotation = torch.tensor([args.rot])
    pose = torch.tensor([_padded(args.pose, args.num_pca, "pose")])
    betas = torch.tensor([_padded(args.betas, NUM_BETAS, "betas")])
    with torch.no_grad():
        out = layer(rotation, pose, betas)
    write_obj(args.out, out.vertices[0].numpy(), layer.faces)
    if args.keypoints:
        record = {"keypoints_3d": out.keypoints[0].tolist(), "order": "openpose21", "units": "m"}
        atomic_write_json(args.keypoints, record)
    print(f"wrote {args.out} ({layer.num_vertices} vertices)")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """Print what a file holds as JSON: a hand model, a packed dataset, a trained model or a training state."""
    from hand3d.file_summary import HAND_MODEL, PACKED, summarise

    summary = summarise(args.path, verify_checksum=not args.no_verify)
    if args.preview and summary["kind"] not in (HAND_MODEL, PACKED):
        raise ValueError(f"{args.path}: --preview draws hand models and packed datasets only")
    json.dump(summary, sys.stdout, indent=2)
    print()
    if args.preview:
        if summary["kind"] == PACKED:
            from hand3d.previews import packed_preview

            packed_preview(args.path, args.preview, count=args.count)
        else:
            from hand3d.hand_preview import render_preview

            render_preview(args.path, args.preview)
        print(f"wrote {args.preview}", file=sys.stderr)
    return 0


def cmd_bench_render(args: argparse.Namespace) -> int:
    """Synthetic rendering throughput on every EGL device: end to end and bare rasterisation."""
    from hand3d.bench import bench_render, format_render_rows

    rows = bench_render(args.model, count=args.count, msaa=args.msaa, threads=args.threads)
    print(format_render_rows(rows, args.count, args.msaa))
    return 0


def cmd_bench_real(args: argparse.Namespace) -> int:
    """Real-data stages (index, crop, GrabCut, heatmaps) on a stand-in: images per second on one core."""
    from hand3d.bench import bench_real, format_real_rates

    print(format_real_rates(bench_real(args.model, count=args.count), args.count))
    return 0


def cmd_bench_train(args: argparse.Namespace) -> int:
    """Training throughput: the full step (data, augmentation, network, hand, losses, Adam) vs the bare backbone."""
    from hand3d.atomic import atomic_write_json
    from hand3d.bench_train import BenchSettings, bench_train, format_train_rows, train_rows_record
    from hand3d.distributed import pick_device

    device = pick_device(args.device)
    given = {k: getattr(args, k) for k in ("backbone", "input_size", "batch_size", "steps", "samples")}
    graphs = args.cuda_graphs == "on"
    if graphs and args.compile == "off":
        raise ValueError("--cuda-graphs on replays compiled graphs: it needs torch.compile (drop --compile off)")
    given["compile"] = {"auto": True if graphs else None, "on": True, "off": False}[args.compile]
    given["readers"] = args.readers
    given["cuda_graphs"] = graphs
    settings = BenchSettings.for_device(torch_device=device, device=args.device, threads=args.threads, **given)
    rows = bench_train(settings, args.model, args.profile)
    name = torch_device_name(device)  # after the run, which sets torch's threads
    print(format_train_rows(rows, settings, name))
    if args.profile:
        print(f"traces (open in https://ui.perfetto.dev) and operator tables in {args.profile}")
    if args.json:
        atomic_write_json(args.json, train_rows_record(rows, settings, name), indent=1)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Meshes, JSON records and overlays for the hands of images, or FreiHAND's benchmark prediction file."""
    if args.format == "freihand":
        from hand3d.freihand_benchmark import predict_freihand

        if len(args.inputs) != 1:
            raise ValueError("--format freihand takes one input: the FreiHAND_pub_v2 folder")
        count = predict_freihand(args.model, args.inputs[0], args.out, args.batch_size, args.device, args.hand_model)
        print(f"wrote {args.out}: predictions for {count} FreiHAND evaluation images")
        return 0
    from hand3d.predict import predict

    done = predict(
        args.inputs,
        args.model,
        args.out,
        boxes=args.boxes,
        openpose=args.openpose,
        left=args.hand == "left",
        box_scale=args.box_scale,
        batch_size=args.batch_size,
        device=args.device,
        hand_model=args.hand_model,
    )
    skipped = f"; skipped: {dict(done.issues)}" if done.issues else ""
    print(f"wrote {done.hands} hand{'' if done.hands == 1 else 's'} to {args.out}{skipped}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """A model and the mean-hand baseline on a packed test set: metrics.json, pck.png and samples.png in --out."""
    from hand3d.eval_summary import headline_metrics
    from hand3d.evaluate import evaluate
    from hand3d.h5io import validate_packed

    dataset = args.dataset or validate_packed(args.test, verify_checksum=False)["source"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = [str(out / name) for name in ("metrics.json", "pck.png", "samples.png")]
    record = evaluate(
        args.model,
        args.test,
        *files,
        dataset=dataset,
        hand_model=args.hand_model,
        batch_size=args.batch_size,
        device=args.device,
        palm_factor=args.palm_factor,
    )
    print(f"{args.model} on {args.test} ({dataset}, {record['samples']} samples, {record['samples_3d']} with 3D)")
    print(f"{'metric':<32} {'model':>8} {'mean hand':>10} {'paper':>8}")
    for metric, model, baseline, paper in headline_metrics(record):
        print(f"{metric:<32} {model:>8} {baseline:>10} {paper:>8}")
    print(f"wrote {', '.join(files)}")
    return 0


def cmd_eval_freihand(args: argparse.Namespace) -> int:
    """Score a FreiHAND pred.json against the evaluation annotations, offline."""
    from hand3d.freihand_benchmark import evaluate_freihand

    record = evaluate_freihand(args.pred, args.gt, args.out)
    scores = record["scores"]
    for key in ("pa_mpjpe_mm", "pa_mpvpe_mm", "f_at_5mm", "f_at_15mm", "auc_joint_0_50mm", "mpjpe_mm"):
        if key in scores:
            print(f"{key:>18}: {scores[key]:.4f}")
    if "mesh_skipped" in record:
        print(f"mesh scores skipped: {record['mesh_skipped']}")
    return 0


def torch_device_name(device) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hand3d", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    mesh = sub.add_parser("mesh", help="write the mesh of a hand for given parameters as OBJ")
    mesh.add_argument("--model", default=DEFAULT_MODEL, help="hand model npz (default: %(default)s)")
    mesh.add_argument("--pose", type=_floats, default=[], help="PCA pose coefficients, comma-separated")
    mesh.add_argument("--betas", type=_floats, default=[], help="shape coefficients (up to 10), comma-separated")
    mesh.add_argument(
        "--rot", type=_rotation, default=[0.0, 0.0, 0.0], help="global rotation, axis-angle in radians: x,y,z"
    )
    mesh.add_argument("--num-pca", type=_positive(int), default=6, help="number of PCA pose components (default: 6)")
    mesh.add_argument("--out", required=True, help="output .obj path")
    mesh.add_argument("--keypoints", help="also write the 21 keypoints (metres, OpenPose order) to this JSON")
    mesh.set_defaults(run=cmd_mesh)

    inspect = sub.add_parser("inspect", help="what a hand model, packed dataset, model.pt or state.pt holds, as JSON")
    inspect.add_argument(
        "path",
        nargs="?",
        default=DEFAULT_MODEL,
        help="hand model .npz, packed .h5, model.pt or state.pt, or a folder holding one of the last two "
        "(default: %(default)s)",
    )
    inspect.add_argument(
        "--preview", help="also draw into this PNG: a packed dataset's samples, a hand model's poses and views"
    )
    inspect.add_argument(
        "--count", type=_positive(int), default=16, help="packed samples in the preview (default: %(default)s)"
    )
    inspect.add_argument(
        "--no-verify", action="store_true", help="packed dataset: skip rereading the data against its checksum"
    )
    inspect.set_defaults(run=cmd_inspect)

    predict = sub.add_parser("predict", help="3D hands from images: mesh .obj, JSON and overlay per hand")
    predict.add_argument("inputs", nargs="+", help="images or folders (searched recursively)")
    predict.add_argument("--model", required=True, help="a trained model.pt (results/models/<experiment>/model.pt)")
    predict.add_argument("--out", required=True, help="output folder (--format freihand: the pred.json path)")
    predict.add_argument(
        "--format", choices=("files", "freihand"), default="files", help="files per hand, or FreiHAND's pred.json"
    )
    where = predict.add_mutually_exclusive_group()
    where.add_argument("--boxes", help='JSON {"image.jpg": [{"box": [x, y, w, h], "hand": "left"}, ...]}')
    where.add_argument("--openpose", help="folder of OpenPose <stem>_keypoints.json (needed by rgb+2d models)")
    predict.add_argument(
        "--hand", choices=("right", "left"), default="right", help="without boxes/detections: the hand in each image"
    )
    predict.add_argument(
        "--box-scale", type=_positive(float), default=2.2, help="crop side / box side (default: %(default)s)"
    )
    predict.add_argument(
        "--batch-size", type=_positive(int), default=16, help="hands per forward pass (default: %(default)s)"
    )
    predict.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    predict.add_argument("--hand-model", help="the MANO_RIGHT.npz the model was trained with (default: found)")
    predict.set_defaults(run=cmd_predict)

    evaluation = sub.add_parser("evaluate", help="a model on a packed test set: metrics, PCK plot, sample overlays")
    evaluation.add_argument("--model", required=True, help="a trained model.pt")
    evaluation.add_argument("--test", required=True, help="a packed test set (results/datasets/<dataset>_test.h5)")
    evaluation.add_argument("--out", required=True, help="folder for metrics.json, pck.png and samples.png")
    evaluation.add_argument(
        "--dataset",
        choices=("synthetic", *DATASETS),
        help="its protocol and paper curves (default: the file's source)",
    )
    evaluation.add_argument(
        "--palm-factor",
        type=_positive(float),
        help="STB: the wrist-from-palm factor its reader used (default: 2.0, the reader's and config.yaml's)",
    )
    evaluation.add_argument(
        "--batch-size", type=_positive(int), default=64, help="crops per forward pass (default: %(default)s)"
    )
    evaluation.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    evaluation.add_argument("--hand-model", help="the MANO_RIGHT.npz the model was trained with (default: found)")
    evaluation.set_defaults(run=cmd_evaluate)

    freihand = sub.add_parser("eval-freihand", help="score a FreiHAND pred.json offline (its official protocol)")
    freihand.add_argument("--pred", required=True, help="pred.json: [xyz_list, verts_list] in metres")
    freihand.add_argument("--gt", required=True, help="the FreiHAND_pub_v2_eval folder")
    freihand.add_argument("--out", help="write the scores as JSON here")
    freihand.set_defaults(run=cmd_eval_freihand)

    bench = sub.add_parser("bench", help="measure throughput").add_subparsers(dest="what", required=True)
    render = bench.add_parser("render", help="synthetic rendering: end to end and bare rasterisation, per device")
    render.add_argument("--model", help="hand model npz (default: a procedural hand built for the run)")
    render.add_argument(
        "--count", type=_positive(int), default=64, help="images per measurement (default: %(default)s)"
    )
    render.add_argument("--msaa", type=_positive(int), default=4, help="MSAA samples (default: %(default)s)")
    render.add_argument("--threads", type=_positive(int), default=1, help="CPU threads for torch and llvmpipe")
    render.set_defaults(run=cmd_bench_render)
    real = bench.add_parser("real", help="real-data stages on a stand-in: index, crop, segment, heatmaps")
    real.add_argument("--model", help="hand model npz (default: a procedural hand built for the run)")
    real.add_argument("--count", type=_positive(int), default=48, help="stand-in hands (default: %(default)s)")
    real.set_defaults(run=cmd_bench_real)
    train = bench.add_parser("train", help="training step: full step vs bare backbone, images/s and ratio")
    train.add_argument(
        "--model", help="hand model npz (default: a procedural hand of about MANO's size: 736 vertices, MANO 778)"
    )
    train.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    train.add_argument(
        "--backbone", choices=("resnet18", "resnet34", "resnet50"), help="default: resnet34 on CUDA, resnet18 on CPU"
    )
    train.add_argument(
        "--input-size", type=_positive(int), help="network input side (default: 256 on CUDA, 128 on CPU)"
    )
    train.add_argument("--batch-size", type=_positive(int), help="default: 256 on CUDA, 16 on CPU")
    train.add_argument(
        "--steps", type=_positive(int), help="timed steps, after as many warm-up ones (default: 50 on CUDA, 16 on CPU)"
    )
    train.add_argument("--samples", type=_positive(int), help="samples in the packed file read (default: 2048 / 64)")
    train.add_argument(
        "--threads",
        type=_positive(int),
        help="CPU threads: torch's and the readers' (default: the CPUs this process may use)",
    )
    train.add_argument(
        "--compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="torch.compile the steps (auto: on CUDA, or with --cuda-graphs on)",
    )
    train.add_argument(
        "--readers",
        choices=("auto", "threads", "processes"),
        default="auto",
        help="batch readers of the full step (auto: processes on CUDA, threads on the CPU)",
    )
    train.add_argument(
        "--cuda-graphs",
        choices=("on", "off"),
        default="off",
        help="compiled: replay both steps as CUDA graphs (torch.compile mode reduce-overhead; default: %(default)s)",
    )
    train.add_argument("--json", help="also write the settings, the figures and the compile counts to this JSON file")
    train.add_argument(
        "--profile",
        metavar="DIR",
        help="then profile 10 more steps of each step measured: GPU busy time and launches per step, and the traces",
    )
    train.set_defaults(run=cmd_bench_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = args.run(args)
        sys.stdout.flush()  # here, where a reader that has gone is met, rather than at the interpreter's exit
        return status
    except (FileNotFoundError, IsADirectoryError, ValueError) as error:
        print(f"hand3d {args.command}: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `hand3d inspect ... | head`: the reader has gone, nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush does not raise again
        return 1


if __name__ == "__main__":
    sys.exit(main())
