// A source folder the README does not name.
