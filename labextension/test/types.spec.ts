/**
 * The REST models in src/types.ts are checked against the API document (api.yaml): every
 * interface that stands for a schema has exactly the schema's properties, and the state union
 * lists exactly the schema's states. A field added on one side only fails here.
 */
import * as fs from 'fs';
import * as path from 'path';

import * as yaml from 'js-yaml';
import * as ts from 'typescript';

import { SESSION_STATES } from '../src/types';

const ROOT = path.join(__dirname, '..', '..');
const SPEC_PATH = path.join(ROOT, 'kernel_sessions', 'server', 'api.yaml');
const TYPES_PATH = path.join(__dirname, '..', 'src', 'types.ts');

/** interface in src/types.ts -> schema in api.yaml */
const MODELS: Record<string, string> = {
  IKernelInfo: 'Kernel',
  IAttachedNotebook: 'AttachedNotebook',
  ISession: 'Session',
  ISessionCreate: 'SessionCreate',
  IVariable: 'Variable',
  IVariableListing: 'VariableListing',
  ICheckpoint: 'CheckpointSummary',
  ICheckpointDetail: 'Checkpoint',
  ICheckpointCreate: 'CheckpointCreate',
  IRestoreRequest: 'RestoreRequest',
  IRestoreResult: 'RestoreReport',
  IPoolStats: 'PoolStats',
  IPool: 'Pool'
};

interface ISchema {
  properties?: Record<string, ISchema>;
  allOf?: ISchema[];
  $ref?: string;
  enum?: string[];
}

const spec = yaml.load(fs.readFileSync(SPEC_PATH, 'utf8')) as {
  components: { schemas: Record<string, ISchema> };
};
const schemas = spec.components.schemas;

function schemaProperties(schema: ISchema): Set<string> {
  if (schema.$ref) {
    return schemaProperties(schemas[schema.$ref.split('/').pop() as string]);
  }
  const names = new Set(Object.keys(schema.properties ?? {}));
  for (const part of schema.allOf ?? []) {
    schemaProperties(part).forEach(n => names.add(n));
  }
  return names;
}

const source = ts.createSourceFile(
  TYPES_PATH,
  fs.readFileSync(TYPES_PATH, 'utf8'),
  ts.ScriptTarget.ES2019,
  true
);
const interfaces = new Map<string, ts.InterfaceDeclaration>();
source.forEachChild(node => {
  if (ts.isInterfaceDeclaration(node)) {
    interfaces.set(node.name.text, node);
  }
});

function interfaceProperties(name: string): Set<string> {
  const decl = interfaces.get(name);
  if (!decl) {
    throw new Error(`no interface ${name} in src/types.ts`);
  }
  const names = new Set<string>();
  for (const member of decl.members) {
    if (ts.isPropertySignature(member) && member.name) {
      names.add(member.name.getText(source).replace(/^['"]|['"]$/g, ''));
    }
  }
  for (const clause of decl.heritageClauses ?? []) {
    for (const base of clause.types) {
      interfaceProperties(base.expression.getText(source)).forEach(n =>
        names.add(n)
      );
    }
  }
  return names;
}

describe('src/types.ts against api.yaml', () => {
  it.each(Object.entries(MODELS))(
    '%s has the properties of schema %s',
    (iface, schema) => {
      expect(schemas[schema]).toBeDefined();
      expect([...interfaceProperties(iface)].sort()).toEqual(
        [...schemaProperties(schemas[schema])].sort()
      );
    }
  );

  it('SessionState lists the states of the API', () => {
    const states = schemas.Session.properties?.state.enum ?? [];
    expect([...SESSION_STATES].sort()).toEqual([...states].sort());
  });
});
