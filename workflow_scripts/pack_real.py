"""Rule pack_real: a real dataset split's shards gathered into results/datasets/<dataset>_<split>.h5."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    from hand3d.real_data import pack_real
    from hand3d.runlog import logged

    with logged(smk.log[0]):
        pack_real(
            list(smk.input.crops),
            list(smk.input.masks),
            list(smk.input.heatmaps),
            smk.output.h5,
            dataset=smk.wildcards.dataset,
            split=smk.wildcards.split,
            index_json=smk.input.index,
            crop_issues=list(smk.input.crop_issues),
            out_issues=smk.output.issues,
        )


if __name__ == "__main__":
    main(snakemake)
