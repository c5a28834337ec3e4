"""Running a federation across machines: SuperLink/SuperNode launch helpers and the site's
resident trainer."""
