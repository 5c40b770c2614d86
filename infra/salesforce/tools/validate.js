// Checks the Salesforce metadata in infra/salesforce the way a deployment would need it:
// 1. Salesforce's own metadata library (@salesforce/source-deploy-retrieve) must convert the
//    source to the Metadata API format `sf project deploy start` sends (unknown types, misplaced
//    or malformed files fail here);
// 2. every field a report type, report, dashboard or the permission set refers to must exist:
//    a custom field in the converted objects, or a standard field we use (listed below);
// 3. every field the settings name (`cm-sf-admin --json settings fields FILE`) must exist with
//    the type the sync needs.
// Usage: node validate.js --source DIR --out DIR [--fields FILE]   (exit 1 with every problem)
'use strict';

const fs = require('fs');
const path = require('path');
const { ComponentSet, MetadataConverter } = require('@salesforce/source-deploy-retrieve');
const { XMLParser } = require('fast-xml-parser');

// Standard fields the shipped metadata and the sync use (Salesforce Object Reference).
const STANDARD = {
  Campaign: ['Id', 'Name', 'Type', 'Status', 'StartDate', 'IsActive', 'ParentId', 'NumberSent',
    'NumberOfResponses', 'NumberOfContacts', 'NumberOfLeads'],
  CampaignMember: ['Id', 'CampaignId', 'ContactId', 'LeadId', 'Email', 'Status', 'HasResponded',
    'FirstRespondedDate'],
  Lead: ['HasOptedOutOfEmail', 'EmailBouncedDate', 'EmailBouncedReason'],
  Contact: ['HasOptedOutOfEmail', 'EmailBouncedDate', 'EmailBouncedReason'],
};
// Child relationships a report type may join (name on the parent -> child object).
const RELATIONSHIPS = { CampaignMembers: 'CampaignMember' };
// Metadata field types for the kinds the sync needs (mapping::settings::FieldKind).
const KINDS = { Number: ['Number'], Text: ['Text', 'Picklist', 'TextArea'], DateTime: ['DateTime'] };

function args() {
  const out = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) out[argv[i].replace(/^--/, '')] = argv[i + 1];
  if (!out.source || !out.out) {
    console.error('usage: node validate.js --source DIR --out DIR [--fields FILE]');
    process.exit(2);
  }
  return out;
}

const parser = new XMLParser({ ignoreAttributes: true, parseTagValue: false, isArray: () => true });
const list = (value) => (value === undefined ? [] : Array.isArray(value) ? value : [value]);
const text = (node, name) => list(node[name]).map(String);
function walkFiles(dir, suffix) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    return entry.isDirectory() ? walkFiles(full, suffix) : full.endsWith(suffix) ? [full] : [];
  });
}
const read = (file, root) => {
  const doc = parser.parse(fs.readFileSync(file, 'utf8'));
  if (!doc[root]) throw new Error(`${file}: not a ${root}`);
  return doc[root][0];
};

async function main() {
  const { source, out, fields } = args();
  const problems = [];

  // 1. Convert with Salesforce's library.
  const set = ComponentSet.fromSource(source);
  const components = set.getSourceComponents().toArray();
  if (components.length === 0) throw new Error(`${source}: no Salesforce metadata found`);
  fs.rmSync(out, { recursive: true, force: true });
  await new MetadataConverter().convert(set, 'metadata', { type: 'directory', outputDirectory: out, genUniqueDir: false });

  // The catalogue: custom fields as converted, with their types, and the standard fields.
  const catalogue = {};
  for (const [object, names] of Object.entries(STANDARD)) {
    catalogue[object] = new Map(names.map((n) => [n, 'standard']));
  }
  for (const file of walkFiles(path.join(out, 'objects'), '.object')) {
    const object = path.basename(file, '.object');
    catalogue[object] = catalogue[object] || new Map();
    for (const field of list(read(file, 'CustomObject').fields)) {
      catalogue[object].set(text(field, 'fullName')[0], text(field, 'type')[0]);
    }
  }
  const has = (object, field) => catalogue[object] && catalogue[object].has(field);

  // 2. Report types: their columns, by table.
  const reportTypes = {};
  for (const file of walkFiles(path.join(out, 'reportTypes'), '.reportType')) {
    const name = path.basename(file, '.reportType');
    const type = read(file, 'ReportType');
    const base = text(type, 'baseObject')[0];
    const tables = { [base]: base };
    for (const join of list(type.join)) {
      const relationship = text(join, 'relationship')[0];
      if (!RELATIONSHIPS[relationship]) problems.push(`${name}: unknown relationship ${relationship}`);
      tables[`${base}.${relationship}`] = RELATIONSHIPS[relationship];
    }
    const exposed = new Set();
    for (const section of list(type.sections)) {
      for (const column of list(section.columns)) {
        const table = text(column, 'table')[0];
        const field = text(column, 'field')[0];
        if (!tables[table]) problems.push(`report type ${name}: unknown table ${table}`);
        else if (!has(tables[table], field)) problems.push(`report type ${name}: ${tables[table]}.${field} does not exist`);
        exposed.add(`${table}$${field}`);
      }
    }
    reportTypes[`${name}__c`] = exposed;
  }

  // Reports: every column, grouping, filter and formula reference is a column of their type.
  const reports = new Set();
  for (const file of walkFiles(path.join(out, 'reports'), '.report')) {
    const name = `${path.basename(path.dirname(file))}/${path.basename(file, '.report')}`;
    reports.add(name);
    const report = read(file, 'Report');
    const typeName = text(report, 'reportType')[0];
    const exposed = reportTypes[typeName];
    if (!exposed) {
      problems.push(`report ${name}: report type ${typeName} is not in the metadata`);
      continue;
    }
    const xml = fs.readFileSync(file, 'utf8');
    const references = new Set();
    for (const match of xml.matchAll(/<(field|column|dateColumn|downGroupingContext)>([^<]+)<\//g)) references.add(match[2]);
    for (const match of xml.matchAll(/<calculatedFormula>([^<]+)<\//g)) {
      for (const ref of match[1].matchAll(/([A-Za-z0-9_.]+\$[A-Za-z0-9_]+)(?::[A-Z]+)?/g)) references.add(ref[1]);
    }
    for (const reference of references) {
      if (!exposed.has(reference)) problems.push(`report ${name}: ${reference} is not a column of ${typeName}`);
    }
  }

  // Dashboards: every component's report exists.
  for (const file of walkFiles(path.join(out, 'dashboards'), '.dashboard')) {
    const xml = fs.readFileSync(file, 'utf8');
    for (const match of xml.matchAll(/<report>([^<]+)<\//g)) {
      if (!reports.has(match[1])) problems.push(`dashboard ${path.basename(file)}: report ${match[1]} is not in the metadata`);
    }
  }

  // Pages, tabs, apps, custom permissions: what exists, by API name.
  const names = (dir, suffix) => new Set(walkFiles(path.join(out, dir), suffix).map((f) => path.basename(f, suffix)));
  const pages = names('pages', '.page');
  const tabs = names('tabs', '.tab');
  const apps = names('applications', '.app');
  const permissions = names('customPermissions', '.customPermission');
  const labels = new Set(walkFiles(path.join(out, 'labels'), '.labels')
    .flatMap((file) => list(read(file, 'CustomLabels').labels).map((label) => text(label, 'fullName')[0])));

  // Tabs: a Visualforce tab's page exists; every label a page uses exists.
  for (const file of walkFiles(path.join(out, 'tabs'), '.tab')) {
    for (const page of text(read(file, 'CustomTab'), 'page')) {
      if (!pages.has(page)) problems.push(`tab ${path.basename(file, '.tab')}: page ${page} is not in the metadata`);
    }
  }
  for (const file of walkFiles(path.join(out, 'pages'), '.page')) {
    for (const match of fs.readFileSync(file, 'utf8').matchAll(/\$Label\.([A-Za-z0-9_]+)/g)) {
      if (!labels.has(match[1])) problems.push(`page ${path.basename(file, '.page')}: custom label ${match[1]} is not in the metadata`);
    }
  }
  // Apps: each tab is ours or a standard one (`standard-Campaign`).
  for (const file of walkFiles(path.join(out, 'applications'), '.app')) {
    for (const tab of text(read(file, 'CustomApplication'), 'tabs')) {
      if (!tab.startsWith('standard-') && !tabs.has(tab)) problems.push(`app ${path.basename(file, '.app')}: tab ${tab} is not in the metadata`);
    }
  }

  // The permission sets: every field, page, tab, app and custom permission they grant exists.
  for (const file of walkFiles(path.join(out, 'permissionsets'), '.permissionset')) {
    const set = read(file, 'PermissionSet');
    const name = path.basename(file);
    for (const permission of list(set.fieldPermissions)) {
      const [object, field] = text(permission, 'field')[0].split('.');
      if (!has(object, field)) problems.push(`permission set ${name}: ${object}.${field} does not exist`);
    }
    const grants = [['pageAccesses', 'apexPage', pages, 'page'], ['tabSettings', 'tab', tabs, 'tab'],
      ['applicationVisibilities', 'application', apps, 'app'], ['customPermissions', 'name', permissions, 'custom permission']];
    for (const [element, key, known, kind] of grants) {
      for (const grant of list(set[element])) {
        const target = text(grant, key)[0];
        if (!known.has(target)) problems.push(`permission set ${name}: ${kind} ${target} is not in the metadata`);
      }
    }
  }

  // 3. The settings' fields exist, with the type the sync needs.
  let settingsFields = 0;
  if (fields) {
    for (const required of JSON.parse(fs.readFileSync(fields, 'utf8'))) {
      settingsFields += 1;
      const type = catalogue[required.object] && catalogue[required.object].get(required.field);
      if (!type) problems.push(`settings: ${required.object}.${required.field} is not in the metadata`);
      else if (type !== 'standard' && !KINDS[required.kind].includes(type)) {
        problems.push(`settings: ${required.object}.${required.field} is ${type}; the sync needs ${required.kind}`);
      }
    }
  }

  if (problems.length) {
    console.error(`Salesforce metadata: ${problems.length} problem(s):\n  ${problems.join('\n  ')}`);
    process.exit(1);
  }
  const count = (suffix) => walkFiles(out, suffix).length;
  console.log(`Salesforce metadata: converted ${components.length} components with source-deploy-retrieve; ` +
    `${count('.reportType')} report type(s), ${reports.size} report(s), ${count('.dashboard')} dashboard(s), ` +
    `${count('.tab')} tab(s), ${count('.app')} app(s), ${count('.page')} page(s), ` +
    `${count('.permissionset')} permission set(s) refer only to fields and components that exist; ` +
    `${settingsFields} field(s) the settings name are there with the right types`);
}

main().catch((error) => {
  console.error(`Salesforce metadata: ${error.message}`);
  process.exit(1);
});
