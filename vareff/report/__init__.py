"""Reports over finished outputs: metrics on labelled alleles, plots, the HTML run report."""
