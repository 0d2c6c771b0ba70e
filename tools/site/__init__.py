"""The course as a static website (`make site`): Sphinx + myst-nb over a copy.

The committed notebooks are never touched. `course` finds the pages by glob,
`rewrite` makes a copy of each one that a static renderer shows right (unique
cell ids, attachments as files, progress-bar widgets as their final text, a
"run this notebook" line), `diagrams` turns mermaid blocks into SVG pictures
with mermaid-cli from npm, and `build` runs Sphinx on the copy and checks that
the HTML fetches nothing from outside the site.
"""
