"""The unit tests an answer to the parse_duration task must pass (run by score.py)."""
import unittest

from solution import parse_duration


class ParseDuration(unittest.TestCase):
    def test_seconds(self):
        self.assertEqual(parse_duration("45s"), 45)

    def test_hours_and_minutes(self):
        self.assertEqual(parse_duration("1h30m"), 5400)

    def test_days_and_hours_with_a_space(self):
        self.assertEqual(parse_duration("2d 4h"), 187200)

    def test_every_unit(self):
        self.assertEqual(parse_duration("1d2h3m4s"), 93784)

    def test_zero_parts(self):
        self.assertEqual(parse_duration("1h 0m 5s"), 3605)
        self.assertEqual(parse_duration("0s"), 0)

    def test_surrounding_whitespace(self):
        self.assertEqual(parse_duration("  10m\t"), 600)

    def test_empty_is_invalid(self):
        for text in ("", "   "):
            with self.assertRaises(ValueError, msg=repr(text)):
                parse_duration(text)

    def test_a_number_needs_a_unit(self):
        for text in ("10", "1h30", "h", "1 h"):
            with self.assertRaises(ValueError, msg=repr(text)):
                parse_duration(text)

    def test_unknown_units_signs_and_fractions_are_invalid(self):
        for text in ("5x", "-5s", "+5s", "1.5h", "5S"):
            with self.assertRaises(ValueError, msg=repr(text)):
                parse_duration(text)

    def test_units_in_order_and_once(self):
        for text in ("1m1h", "1h1h", "30s 2m", "1h 1h"):
            with self.assertRaises(ValueError, msg=repr(text)):
                parse_duration(text)


if __name__ == "__main__":
    unittest.main()
