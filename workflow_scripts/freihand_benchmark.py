"""Rule freihand_benchmark: FreiHAND's official scores of a pred.json, computed offline."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    from hand3d.datasets.freihand import eval_folder
    from hand3d.freihand_benchmark import evaluate_freihand
    from hand3d.runlog import logged

    with logged(smk.log[0]):
        gt = eval_folder(smk.params.root, smk.params.eval_root)
        evaluate_freihand(smk.input.pred, str(gt), smk.output.scores)


if __name__ == "__main__":
    main(snakemake)
