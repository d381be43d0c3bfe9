"""The four imitated sites, their photo CDNs and the hostile ``elsewhere`` host."""
