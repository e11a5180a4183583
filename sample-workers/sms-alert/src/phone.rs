//! The check that a phone number is in E.164 form.

/// Minimum number of digits after the `+`, the bound that the host's SMS
/// gateways apply too.
const MIN_DIGITS: usize = 7;

/// Maximum number of digits after the `+`, set by ITU-T E.164.
const MAX_DIGITS: usize = 15;

/// Checks that `number` is in E.164 form: `+`, then 7 to 15 digits that do
/// not start with 0, with no spaces or punctuation. Returns the reason for
/// a fail outcome otherwise.
pub fn check_e164(number: &str) -> Result<(), String> {
    let digits = number.strip_prefix('+').unwrap_or("");
    let valid = (MIN_DIGITS..=MAX_DIGITS).contains(&digits.len())
        && digits.bytes().all(|byte| byte.is_ascii_digit())
        && !digits.starts_with('0');

    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid payload: `phone` {number:?} is not an E.164 number, expected `+`, the \
             country code and the number, digits only, such as \"+14155550123\""
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_numbers_pass() {
        let numbers = [
            "+14155550123",
            "+447700900123",
            "+4930123456",
            "+1234567",
            "+123456789012345",
        ];

        for number in numbers {
            assert_eq!(check_e164(number), Ok(()), "{number}");
        }
    }

    #[test]
    fn invalid_numbers_fail() {
        let numbers = [
            "",
            "+",
            "14155550123",
            "+1 415 555 0123",
            "+1-415-555-0123",
            "+1 (415) 5550123",
            "+04155550123",
            "+123456",
            "+1234567890123456",
            "++14155550123",
            "+1415555012a",
            "+１４１５５５５０１２３",
        ];

        for number in numbers {
            let reason = check_e164(number).unwrap_err();
            assert!(reason.contains("E.164"), "{number}: {reason}");
        }
    }

    #[test]
    fn reason_quotes_number() {
        let reason = check_e164("555-0123").unwrap_err();

        assert!(reason.contains("\"555-0123\""), "{reason}");
    }
}
