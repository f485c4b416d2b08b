"""Running a project on its own: schedules (``spec``) and the loop that keeps them (``runner``)."""
