//! The Salesforce objects the product uses, with their standard fields and rules of access.

use std::collections::BTreeMap;

use crate::scenario::CustomField;

/// A field's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// Record Id.
    Id,
    /// Text.
    Text,
    /// Picklist value.
    Picklist,
    /// Number.
    Double,
    /// Checkbox.
    Boolean,
    /// Date.
    Date,
    /// Date and time.
    DateTime,
    /// Lookup to another object.
    Reference(&'static str),
}

impl FieldType {
    /// The name describe uses.
    pub fn describe_name(self) -> &'static str {
        match self {
            FieldType::Id => "id",
            FieldType::Text => "string",
            FieldType::Picklist => "picklist",
            FieldType::Double => "double",
            FieldType::Boolean => "boolean",
            FieldType::Date => "date",
            FieldType::DateTime => "datetime",
            FieldType::Reference(_) => "reference",
        }
    }
}

/// How a field may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Never (system or derived).
    ReadOnly,
    /// On create only.
    CreateOnly,
    /// On create and update.
    ReadWrite,
}

/// A field.
#[derive(Debug, Clone)]
pub struct Field {
    /// API name.
    pub name: String,
    /// Type.
    pub field_type: FieldType,
    /// Write access.
    pub access: Access,
    /// Must be given on create.
    pub required: bool,
    /// Unique external id.
    pub external_id: bool,
}

/// An object's fields.
#[derive(Debug, Clone)]
pub struct ObjectSchema {
    /// API name.
    pub name: &'static str,
    /// Id prefix.
    pub prefix: &'static str,
    /// Fields by lower-case name.
    pub fields: BTreeMap<String, Field>,
}

impl ObjectSchema {
    /// A field by name, case-insensitively.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.get(&name.to_ascii_lowercase())
    }
}

fn field(name: &str, field_type: FieldType, access: Access, required: bool) -> Field {
    Field {
        name: name.to_owned(),
        field_type,
        access,
        required,
        external_id: false,
    }
}

/// The objects, with the scenario's custom fields added.
pub fn schemas(custom: &BTreeMap<String, Vec<CustomField>>) -> BTreeMap<String, ObjectSchema> {
    use Access::*;
    use FieldType::*;
    let system = || {
        vec![
            field("Id", Id, ReadOnly, false),
            field("CreatedDate", DateTime, ReadOnly, false),
            field("LastModifiedDate", DateTime, ReadOnly, false),
            field("SystemModstamp", DateTime, ReadOnly, false),
        ]
    };
    let mut objects = vec![
        (
            "Campaign",
            "701",
            vec![
                field("Name", Text, ReadWrite, true),
                field("Type", Picklist, ReadWrite, false),
                field("Status", Picklist, ReadWrite, false),
                field("IsActive", Boolean, ReadWrite, false),
                field("StartDate", Date, ReadWrite, false),
                field("EndDate", Date, ReadWrite, false),
                field("ParentId", Reference("Campaign"), ReadWrite, false),
                field("Description", Text, ReadWrite, false),
                field("NumberSent", Double, ReadWrite, false),
                field("ExpectedResponse", Double, ReadWrite, false),
                field("BudgetedCost", Double, ReadWrite, false),
                field("ActualCost", Double, ReadWrite, false),
                field("ExpectedRevenue", Double, ReadWrite, false),
                field("NumberOfLeads", Double, ReadOnly, false),
                field("NumberOfContacts", Double, ReadOnly, false),
                field("NumberOfResponses", Double, ReadOnly, false),
                field("NumberOfConvertedLeads", Double, ReadOnly, false),
                field("NumberOfOpportunities", Double, ReadOnly, false),
            ],
        ),
        (
            "CampaignMember",
            "00v",
            vec![
                field("CampaignId", Reference("Campaign"), CreateOnly, true),
                field("LeadId", Reference("Lead"), CreateOnly, false),
                field("ContactId", Reference("Contact"), CreateOnly, false),
                field("Status", Picklist, ReadWrite, false),
                field("HasResponded", Boolean, ReadOnly, false),
                field("FirstRespondedDate", Date, ReadOnly, false),
                field("Email", Text, ReadOnly, false),
                field("LeadOrContactId", Text, ReadOnly, false),
                field("HasOptedOutOfEmail", Boolean, ReadOnly, false),
            ],
        ),
        (
            "CampaignMemberStatus",
            "01Y",
            vec![
                field("CampaignId", Reference("Campaign"), CreateOnly, true),
                field("Label", Text, ReadWrite, true),
                field("HasResponded", Boolean, ReadWrite, false),
                field("IsDefault", Boolean, ReadWrite, false),
                field("SortOrder", Double, ReadWrite, false),
            ],
        ),
        (
            "Lead",
            "00Q",
            vec![
                field("FirstName", Text, ReadWrite, false),
                field("LastName", Text, ReadWrite, true),
                field("Company", Text, ReadWrite, true),
                field("Email", Text, ReadWrite, false),
                field("HasOptedOutOfEmail", Boolean, ReadWrite, false),
                field("EmailBouncedDate", DateTime, ReadWrite, false),
                field("EmailBouncedReason", Text, ReadWrite, false),
                field("IsConverted", Boolean, ReadOnly, false),
            ],
        ),
        (
            "Contact",
            "003",
            vec![
                field("FirstName", Text, ReadWrite, false),
                field("LastName", Text, ReadWrite, true),
                field("Email", Text, ReadWrite, false),
                field("HasOptedOutOfEmail", Boolean, ReadWrite, false),
                field("EmailBouncedDate", DateTime, ReadWrite, false),
                field("EmailBouncedReason", Text, ReadWrite, false),
                field("AccountId", Text, ReadWrite, false),
            ],
        ),
    ];
    let mut schemas = BTreeMap::new();
    for (name, prefix, fields) in objects.drain(..) {
        let mut map = BTreeMap::new();
        for f in system().into_iter().chain(fields) {
            map.insert(f.name.to_ascii_lowercase(), f);
        }
        for custom_field in custom.get(name).into_iter().flatten() {
            let field_type = match custom_field.field_type.as_str() {
                "double" | "number" => Double,
                "datetime" => DateTime,
                "date" => Date,
                "boolean" | "checkbox" => Boolean,
                "picklist" => Picklist,
                _ => Text,
            };
            map.insert(
                custom_field.name.to_ascii_lowercase(),
                Field {
                    name: custom_field.name.clone(),
                    field_type,
                    access: ReadWrite,
                    required: false,
                    external_id: custom_field.external_id,
                },
            );
        }
        schemas.insert(
            name.to_owned(),
            ObjectSchema {
                name,
                prefix,
                fields: map,
            },
        );
    }
    schemas
}

/// The two statuses a new campaign gets, in the org's language: (default "sent", responded).
pub fn stock_statuses(language: &str) -> (&'static str, &'static str) {
    match language {
        "ja" => ("送信", "レスポンスあり"),
        "fr" => ("Envoyé", "Répondu"),
        "de" => ("Gesendet", "Geantwortet"),
        "es" => ("Enviado", "Respondido"),
        _ => ("Sent", "Responded"),
    }
}
