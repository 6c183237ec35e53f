//! Reference data written at start when missing: the communes (the official 2025 list, and
//! the 2024 districts and communes for history), embedded from `data/`, and the product
//! catalogue of local produce.

use crate::store::{Arg, ColType, Conn, StoreError};

/// The 65 communes and wards after the July 2025 reform: `commune_code,commune_name,division_type`.
const COMMUNES_2025: &str = include_str!("../../data/langson-communes-2025.csv");
/// The 11 districts and 194 communes before it: `district_code,district_name,commune_code,commune_name`.
const COMMUNES_2024: &str = include_str!("../../data/langson-communes-2024.csv");

/// A catalogue entry to seed: code, Vietnamese and English names, unit, typical price range
/// per unit in đồng.
pub(crate) struct ProductSeed {
    pub code: &'static str,
    pub name_vi: &'static str,
    pub name_en: &'static str,
    pub unit: &'static str,
    pub min_price: i64,
    pub max_price: i64,
}

const fn p(
    code: &'static str,
    name_vi: &'static str,
    name_en: &'static str,
    min_price: i64,
    max_price: i64,
) -> ProductSeed {
    ProductSeed { code, name_vi, name_en, unit: "kg", min_price, max_price }
}

/// Local produce of Lạng Sơn, in menu order (na first). Names are short: they go on USSD
/// screens of 80 UCS2 characters.
pub(crate) const PRODUCTS: &[ProductSeed] = &[
    p("na", "Na", "Custard apple", 20_000, 80_000),
    p("hoa_hoi", "Hoa hồi", "Star anise", 60_000, 200_000),
    p("thach_den", "Thạch đen", "Black jelly", 30_000, 120_000),
    ProductSeed {
        code: "rau_bo_khai",
        name_vi: "Rau bò khai",
        name_en: "Bo khai greens",
        unit: "bó",
        min_price: 10_000,
        max_price: 30_000,
    },
    p("lap_suon", "Lạp sườn", "Smoked sausage", 200_000, 450_000),
    p("che_van_linh", "Chè Vạn Linh", "Van Linh tea", 200_000, 1_200_000),
    p("quyt_bac_son", "Quýt Bắc Sơn", "Bac Son tangerine", 20_000, 60_000),
    p("hong_bao_lam", "Hồng Bảo Lâm", "Bao Lam persimmon", 20_000, 60_000),
    p("mang_kho", "Măng khô", "Dried bamboo shoots", 150_000, 350_000),
    ProductSeed {
        code: "mat_ong",
        name_vi: "Mật ong",
        name_en: "Honey",
        unit: "lít",
        min_price: 250_000,
        max_price: 600_000,
    },
];

/// A parsed commune of the 2025 list.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Commune2025 {
    pub code: i64,
    pub name: String,
    pub kind: String,
}

/// A parsed commune of the 2024 list, with its district.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Commune2024 {
    pub district_code: i64,
    pub district_name: String,
    pub code: i64,
    pub name: String,
}

/// Splits a CSV text without quoting (the official lists have none) into rows of
/// `columns` fields, skipping the header and blank lines.
fn rows(text: &str, what: &str, columns: usize) -> Result<Vec<Vec<String>>, StoreError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        if line.contains('"') {
            return Err(StoreError::Seed(format!("{what} line {}: quoted fields are not supported", i + 1)));
        }
        let fields: Vec<String> = line.split(',').map(|f| f.trim().to_owned()).collect();
        if fields.len() != columns {
            return Err(StoreError::Seed(format!(
                "{what} line {}: {} fields, expected {columns}",
                i + 1,
                fields.len()
            )));
        }
        out.push(fields);
    }
    Ok(out)
}

fn code(what: &str, s: &str) -> Result<i64, StoreError> {
    s.parse::<u32>().map(i64::from).map_err(|_| StoreError::Seed(format!("{what}: bad code {s:?}")))
}

/// The embedded 2025 list.
pub(crate) fn communes_2025() -> Result<Vec<Commune2025>, StoreError> {
    rows(COMMUNES_2025, "langson-communes-2025.csv", 3)?
        .into_iter()
        .map(|f| {
            let kind = f[2].clone();
            if kind != "xã" && kind != "phường" {
                return Err(StoreError::Seed(format!(
                    "langson-communes-2025.csv: bad division type {kind:?}"
                )));
            }
            Ok(Commune2025 { code: code("langson-communes-2025.csv", &f[0])?, name: f[1].clone(), kind })
        })
        .collect()
}

/// The embedded 2024 list.
pub(crate) fn communes_2024() -> Result<Vec<Commune2024>, StoreError> {
    rows(COMMUNES_2024, "langson-communes-2024.csv", 4)?
        .into_iter()
        .map(|f| {
            Ok(Commune2024 {
                district_code: code("langson-communes-2024.csv", &f[0])?,
                district_name: f[1].clone(),
                code: code("langson-communes-2024.csv", &f[2])?,
                name: f[3].clone(),
            })
        })
        .collect()
}

async fn is_empty(c: &mut Conn<'_>, sql: &'static str) -> Result<bool, StoreError> {
    Ok(c.fetch_optional(sql, Vec::new()).await?.is_none())
}

/// Writes whatever reference data is missing, in the caller's transaction. Safe to run on
/// every start and from several nodes at once (existing rows are left alone).
pub(crate) async fn seed(c: &mut Conn<'_>) -> Result<(), StoreError> {
    if is_empty(c, "SELECT code FROM communes LIMIT 1").await? {
        let rows = communes_2025()?
            .into_iter()
            .map(|r| vec![Arg::Int(r.code), Arg::Text(r.name), Arg::Text(r.kind)])
            .collect();
        let n = c
            .insert_rows(
                "communes",
                &[("code", ColType::Int), ("name", ColType::Text), ("kind", ColType::Text)],
                rows,
                true,
            )
            .await?;
        tracing::info!(communes = n, "seeded the 2025 communes");
    }
    if is_empty(c, "SELECT code FROM districts_2024 LIMIT 1").await? {
        let communes = communes_2024()?;
        let mut districts: Vec<(i64, String)> =
            communes.iter().map(|r| (r.district_code, r.district_name.clone())).collect();
        districts.sort();
        districts.dedup();
        let district_rows =
            districts.into_iter().map(|(code, name)| vec![Arg::Int(code), Arg::Text(name)]).collect();
        c.insert_rows(
            "districts_2024",
            &[("code", ColType::Int), ("name", ColType::Text)],
            district_rows,
            true,
        )
        .await?;
        let commune_rows = communes
            .into_iter()
            .map(|r| vec![Arg::Int(r.code), Arg::Text(r.name), Arg::Int(r.district_code)])
            .collect();
        let n = c
            .insert_rows(
                "communes_2024",
                &[("code", ColType::Int), ("name", ColType::Text), ("district_code", ColType::Int)],
                commune_rows,
                true,
            )
            .await?;
        tracing::info!(communes = n, "seeded the 2024 districts and communes");
    }
    if is_empty(c, "SELECT id FROM products LIMIT 1").await? {
        let rows = PRODUCTS
            .iter()
            .zip(1_i64..)
            .map(|(p, i)| {
                vec![
                    Arg::Text(p.code.to_owned()),
                    Arg::Text(p.name_vi.to_owned()),
                    Arg::Text(p.name_en.to_owned()),
                    Arg::Text(p.unit.to_owned()),
                    Arg::Int(p.min_price),
                    Arg::Int(p.max_price),
                    Arg::Int(i * 10),
                ]
            })
            .collect();
        let n = c
            .insert_rows(
                "products",
                &[
                    ("code", ColType::Text),
                    ("name_vi", ColType::Text),
                    ("name_en", ColType::Text),
                    ("unit", ColType::Text),
                    ("min_price", ColType::Int),
                    ("max_price", ColType::Int),
                    ("sort_order", ColType::Int),
                ],
                rows,
                true,
            )
            .await?;
        tracing::info!(products = n, "seeded the product catalogue");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_2025_list_should_have_65_communes_with_unique_codes() {
        let list = communes_2025().unwrap();
        assert_eq!(list.len(), 65);
        let mut codes: Vec<i64> = list.iter().map(|c| c.code).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), 65);
        assert_eq!(list.iter().filter(|c| c.kind == "phường").count(), 4);
        assert!(list.iter().all(|c| !c.name.ends_with('\r')));
    }

    #[test]
    fn embedded_2024_list_should_have_11_districts_and_194_communes() {
        let list = communes_2024().unwrap();
        assert_eq!(list.len(), 194);
        let mut districts: Vec<i64> = list.iter().map(|c| c.district_code).collect();
        districts.sort();
        districts.dedup();
        assert_eq!(districts.len(), 11);
    }

    #[test]
    fn catalogue_should_start_with_na_and_have_sane_prices() {
        assert_eq!(PRODUCTS[0].code, "na");
        for p in PRODUCTS {
            assert!(p.min_price >= 1000 && p.min_price < p.max_price, "{}", p.code);
            assert!(["kg", "lít", "bó"].contains(&p.unit), "{}", p.code);
        }
    }

    #[test]
    fn malformed_csv_should_be_reported_with_its_line() {
        let err = rows("h\na,b\n", "x.csv", 1).unwrap_err();
        assert!(err.to_string().contains("x.csv line 2"), "{err}");
        let err = rows("h\n\"a\"\n", "x.csv", 1).unwrap_err();
        assert!(err.to_string().contains("quoted"), "{err}");
    }
}
