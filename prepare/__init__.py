"""Download scripts for the files motion_loop needs but cannot ship (run as `python prepare/<name>.py`)."""
