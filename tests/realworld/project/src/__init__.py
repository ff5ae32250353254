"""The project's own code, as cookiecutter-data-science lays it out: src/ beside notebooks/."""
