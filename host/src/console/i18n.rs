//! English and Thai: the labels, dates (with the Buddhist Era option) and money.
//!
//! Labels are a typed table in Rust rather than a message-catalog crate (fluent, rust-i18n): the
//! console has two languages and no plural rules worth a runtime, and an enum makes a missing
//! translation a compile error — the `labels!` macro will not accept an entry without both
//! texts. Each page module may declare its own table with the same macro.

use time::OffsetDateTime;

/// The console's languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Th,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Th => "th",
        }
    }

    pub fn parse(code: &str) -> Option<Lang> {
        match code.trim() {
            "en" => Some(Lang::En),
            "th" => Some(Lang::Th),
            _ => None,
        }
    }

    /// The first of English or Thai that an `Accept-Language` header names (in its order; the
    /// browser lists its preference first), English when neither.
    pub fn from_accept_language(header: &str) -> Lang {
        header
            .split(',')
            .filter_map(|part| {
                let tag = part.split(';').next()?.trim().to_ascii_lowercase();
                let primary = tag.split('-').next()?.to_owned();
                Lang::parse(&primary)
            })
            .next()
            .unwrap_or(Lang::En)
    }
}

/// How years are counted in dates: the Buddhist Era (Thai default) is the Common Era + 543.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    Common,
    Buddhist,
}

/// Declares a table of labels: `labels! { pub enum L { Name: "English", "ไทย"; ... } }` gives
/// `L::Name.text(lang)`.
#[macro_export]
macro_rules! console_labels {
    ($vis:vis enum $name:ident { $($key:ident: $en:literal, $th:literal;)* }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[allow(dead_code)]
        $vis enum $name { $($key),* }
        impl $name {
            #[allow(dead_code)]
            pub fn text(self, lang: $crate::console::i18n::Lang) -> &'static str {
                match (self, lang) {
                    $(
                        ($name::$key, $crate::console::i18n::Lang::En) => $en,
                        ($name::$key, $crate::console::i18n::Lang::Th) => $th,
                    )*
                }
            }
        }
    };
}
pub use console_labels as labels;

labels! {
    pub enum L {
        AppName: "Rapport", "Rapport";
        SkipToContent: "Skip to content", "ข้ามไปยังเนื้อหา";
        Dashboard: "Dashboard", "แดชบอร์ด";
        Customers: "Customers", "ลูกค้า";
        Distributors: "Distributors", "ผู้จัดจำหน่าย";
        Import: "Import", "นำเข้าข้อมูล";
        Plugins: "Plugins", "ปลั๊กอิน";
        Reports: "Reports", "รายงาน";
        Audit: "Audit log", "บันทึกการตรวจสอบ";
        SignIn: "Sign in", "เข้าสู่ระบบ";
        SignOut: "Sign out", "ออกจากระบบ";
        Token: "API key or admin token", "คีย์ API หรือโทเค็นผู้ดูแลระบบ";
        TokenHelp: "Your organization's owner gives you a key; it is kept in this browser only as a session.",
            "เจ้าของระบบขององค์กรจะให้คีย์แก่คุณ เบราว์เซอร์จะเก็บไว้เพียงในรูปแบบเซสชัน";
        BadToken: "This key is not valid (revoked, or never issued). Check it and try again.",
            "คีย์นี้ใช้ไม่ได้ (ถูกเพิกถอนหรือไม่เคยออกให้) โปรดตรวจสอบแล้วลองอีกครั้ง";
        EmptyToken: "Paste your API key or the admin token.", "โปรดวางคีย์ API หรือโทเค็นผู้ดูแลระบบ";
        Language: "Language", "ภาษา";
        BuddhistEra: "Buddhist Era years", "ปีพุทธศักราช";
        CommonEra: "Common Era years", "ปีคริสต์ศักราช";
        NotFound: "Page not found", "ไม่พบหน้านี้";
        NotFoundText: "There is nothing here, or you may not see it. Check the address, or go back to the dashboard.",
            "ไม่มีหน้านี้ หรือคุณไม่มีสิทธิ์ดู โปรดตรวจสอบที่อยู่ หรือกลับไปที่แดชบอร์ด";
        Forbidden: "Not allowed", "ไม่ได้รับอนุญาต";
        CsrfFailed: "This form expired or did not come from this console. Reload the page and submit it again; nothing was changed.",
            "แบบฟอร์มนี้หมดอายุหรือไม่ได้มาจากคอนโซลนี้ โปรดโหลดหน้าใหม่แล้วส่งอีกครั้ง ยังไม่มีการเปลี่ยนแปลงใด ๆ";
        Error: "Something went wrong", "เกิดข้อผิดพลาด";
        BadRequest: "The request could not be done", "ไม่สามารถดำเนินการตามคำขอได้";
        Organizations: "Organizations", "องค์กร";
        ChooseOrg: "Choose an organization to work in.", "เลือกองค์กรที่จะทำงาน";
        SignedInAs: "Signed in as", "เข้าสู่ระบบในนาม";
        Role: "Role", "บทบาท";
        Scope: "Scope", "ขอบเขต";
        WholeOrg: "the whole organization", "ทั้งองค์กร";
        Branch: "Branch", "สาขา";
        Distributor: "Distributor", "ผู้จัดจำหน่าย";
        Back: "Back", "ย้อนกลับ";
        Soon: "This page is being built.", "หน้านี้กำลังพัฒนา";
    }
}

const MONTHS_EN: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const MONTHS_TH: [&str; 12] =
    ["ม.ค.", "ก.พ.", "มี.ค.", "เม.ย.", "พ.ค.", "มิ.ย.", "ก.ค.", "ส.ค.", "ก.ย.", "ต.ค.", "พ.ย.", "ธ.ค."];

/// A moment (Unix milliseconds) as `23 Nov 2026 16:05` or `23 พ.ย. 2569 16:05`, in UTC.
pub fn datetime(ms: i64, lang: Lang, era: Era) -> String {
    let Some(t) = at(ms) else { return ms.to_string() };
    format!("{} {:02}:{:02}", date_of(t, lang, era), t.hour(), t.minute())
}

/// A day (Unix milliseconds) as `23 Nov 2026` or `23 พ.ย. 2569`, in UTC.
pub fn date(ms: i64, lang: Lang, era: Era) -> String {
    at(ms).map_or_else(|| ms.to_string(), |t| date_of(t, lang, era))
}

fn at(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

fn date_of(t: OffsetDateTime, lang: Lang, era: Era) -> String {
    let month = usize::from(u8::from(t.month())) - 1;
    let year = match era {
        Era::Common => t.year(),
        Era::Buddhist => t.year() + 543,
    };
    let name = match lang {
        Lang::En => MONTHS_EN[month],
        Lang::Th => MONTHS_TH[month],
    };
    format!("{} {name} {year}", t.day())
}

/// An amount in minor units formatted for its currency: `฿1,234.50`, `$12.00`, `¥1,200`,
/// `1,234.50 CHF` for a currency without a symbol here.
pub fn money(amount_minor: i64, currency: &str) -> String {
    let currency = currency.trim().to_ascii_uppercase();
    // ISO 4217 minor units: most currencies have 2; these have none or 3.
    let decimals: u32 = match currency.as_str() {
        "JPY" | "KRW" | "VND" | "CLP" | "ISK" | "UGX" | "XAF" | "XOF" => 0,
        "BHD" | "KWD" | "OMR" | "JOD" | "TND" | "IQD" | "LYD" => 3,
        _ => 2,
    };
    let scale = 10i64.pow(decimals);
    let (neg, abs) = (amount_minor < 0, amount_minor.unsigned_abs());
    let whole = group_thousands(abs / scale as u64);
    let number = if decimals == 0 {
        whole
    } else {
        format!("{whole}.{:0width$}", abs % scale as u64, width = decimals as usize)
    };
    let sign = if neg { "-" } else { "" };
    match currency.as_str() {
        "THB" => format!("{sign}฿{number}"),
        "USD" => format!("{sign}${number}"),
        "EUR" => format!("{sign}€{number}"),
        "GBP" => format!("{sign}£{number}"),
        "JPY" => format!("{sign}¥{number}"),
        _ => format!("{sign}{number} {currency}"),
    }
}

/// `1234567` as `1,234,567`.
pub fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thai_dates_count_buddhist_era_years_with_thai_month_names() {
        // 2026-11-23T16:05:00Z
        let ms = 1_795_449_900_000;
        assert_eq!(datetime(ms, Lang::En, Era::Common), "23 Nov 2026 16:05");
        assert_eq!(date(ms, Lang::Th, Era::Buddhist), "23 พ.ย. 2569");
        assert_eq!(date(ms, Lang::Th, Era::Common), "23 พ.ย. 2026");
    }

    #[test]
    fn money_is_formatted_by_its_currency() {
        assert_eq!(money(123_450, "THB"), "฿1,234.50");
        assert_eq!(money(-5, "usd"), "-$0.05");
        assert_eq!(money(120_000, "JPY"), "¥120,000");
        assert_eq!(money(1_234_567, "KWD"), "1,234.567 KWD");
        assert_eq!(money(100, "CHF"), "1.00 CHF");
    }

    #[test]
    fn the_browser_preference_picks_the_language() {
        assert_eq!(Lang::from_accept_language("th-TH,th;q=0.9,en;q=0.8"), Lang::Th);
        assert_eq!(Lang::from_accept_language("en-GB,en;q=0.9,th;q=0.5"), Lang::En);
        assert_eq!(Lang::from_accept_language("fr-FR"), Lang::En);
    }
}
