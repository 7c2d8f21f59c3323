"""Rule evaluate: one run's metrics (and the mean-hand baseline's) on one test set, PCK plots, sample overlays."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    from hand3d.evaluate import evaluate
    from hand3d.runlog import logged

    with logged(smk.log[0]):
        evaluate(
            smk.input.model,
            smk.input.test,
            smk.output.metrics,
            smk.output.plot,
            smk.output.samples,
            dataset=smk.wildcards.testset,
            hand_model=smk.input.hand_model,
            palm_factor=smk.params.palm_factor,
        )


if __name__ == "__main__":
    main(snakemake)
