"""Where things run: Ray start-up and placement, threads, the allocator, shared storage, the reaper."""
