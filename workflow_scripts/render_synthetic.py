"""Rule render_synthetic: one shard of synthetic renders, in the packed HDF5 layout."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    from hand3d.runlog import logged
    from hand3d.synthetic import SamplerConfig, render_shard

    sampler = SamplerConfig(num_pca=smk.params.num_pca, **smk.params.sampler)
    with logged(smk.log[0]):
        render_shard(
            smk.output.h5,
            smk.input.model,
            smk.input.colors,
            smk.input.backgrounds,
            split=smk.wildcards.split,
            shard=smk.params.shard,
            count=smk.params.samples,
            seed=smk.params.seed,
            sampler=sampler,
            msaa=smk.params.msaa,
            store_vertices=smk.params.store_vertices,
            threads=smk.threads,
        )


if __name__ == "__main__":
    main(snakemake)
