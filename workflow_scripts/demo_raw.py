"""Rule demo_raw: a small stand-in for a dataset, written in its published layout (not the dataset)."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    from hand3d.real_data import write_demo_raw
    from hand3d.runlog import logged

    with logged(smk.log[0]):
        write_demo_raw(
            smk.wildcards.dataset, smk.output.root, smk.input.model, seed=smk.params.seed, scale=smk.params.scale
        )


if __name__ == "__main__":
    main(snakemake)
