# nbgrader's configuration for this course (https://nbgrader.readthedocs.io).
#
# Put the solution notebooks in nbgrader's source folder as an assignment,
# e.g. source/minildr/*.ipynb copied from solutions/, and run nbgrader from
# the folder holding this file (or copy it into your course folder):
#
#     nbgrader generate_assignment minildr     # release/minildr: what exercises/ holds
#     nbgrader autograde minildr               # each check cell is a test of 1 point
#     nbgrader generate_feedback minildr       # the course's own check messages
#
# The notebooks find the course's examples and headers themselves
# (minildr.course.course_files): from the checkout of the minildr that
# nbgrader's kernels import, or the folder pip installed it from. If neither
# is a course checkout, set MINILDR_COURSE to one before running nbgrader.
# (Exercises 05-09 still read ../examples until they are converted: for
# those, put the repository's examples/ beside the assignment's folder.)
# tests/course/test_nbgrader.py runs this whole cycle.
import os

from minildr.course.grading import GRADING_VARIABLE, ClearCourseSolutions, MarkChecks

c = get_config()  # noqa: F821 - nbgrader's config loader defines get_config

# Kernels nbgrader starts inherit this: a check that is not done then fails as a test.
os.environ[GRADING_VARIABLE] = "1"

# generate_assignment: nbgrader's own steps, with the course's clearing (C
# answers get a C skeleton, as in exercises/) and every check cell marked as
# a test of one point.
c.GenerateAssignment.preprocessors = [
    "nbgrader.preprocessors.IncludeHeaderFooter",
    "nbgrader.preprocessors.InstantiateTests",
    MarkChecks,
    "nbgrader.preprocessors.LockCells",
    ClearCourseSolutions,
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.CheckCellMetadata",
    "nbgrader.preprocessors.ComputeChecksums",
    "nbgrader.preprocessors.SaveCells",
    "nbgrader.preprocessors.ClearHiddenTests",
    "nbgrader.preprocessors.ClearMarkScheme",
    "nbgrader.preprocessors.ComputeChecksums",
    "nbgrader.preprocessors.CheckCellMetadata",
]

# Build output (plugins, the learner's sources, keys made by the notebooks)
# never goes into a release or back to students in their feedback.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback",
                            "build", "*.so", "*.dylib", "*.dll", "*.key", "*.o"]

# Building plugins and starting isolated workers takes time on a busy hub.
c.Execute.timeout = 300
