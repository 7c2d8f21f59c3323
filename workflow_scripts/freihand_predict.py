"""Rule freihand_predict: a run's predictions for FreiHAND's evaluation images, in the benchmark's pred.json format."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    from hand3d.freihand_benchmark import predict_freihand
    from hand3d.runlog import logged

    with logged(smk.log[0]):
        predict_freihand(smk.input.model, smk.params.root, smk.output.pred, hand_model=smk.input.hand_model)


if __name__ == "__main__":
    main(snakemake)
